r"""Why a router collapses: tie shares, noise injection and feature diversity per task.

    python -m jaxroute.launch.diagnose --data_path=PATH/TO/routerbench_data \
        --features=workdir_features.npy

Prints readable tables (``--json``: one JSON object instead): per task the top-2 tie
share, the oracle's and the strong model's mean quality; the noise-injection curve
(oracle scores + Gaussian noise of growing scale -> the strong model's call rate at the
largest budget); and, with
``--features`` (a .npy with a .ids beside it), the mean within-task cosine similarity of
the features (1.0 means every prompt of the task looks the same to a router).
"""

import numpy as np
from absl import app, flags, logging

from jaxroute import routing
from jaxroute.encoders import load_features
from jaxroute.launch import common
from jaxroute.routing.diagnostics import task_diagnostics

_FEATURES = flags.DEFINE_string("features", None, "Optional features .npy (+ .ids).")
_JSON = common.define_json()
_SCALES = flags.DEFINE_list(
    "noise_scales", ["0", "0.001", "0.01", "0.03", "0.1", "0.3", "1"], "Noise std values."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    data = common.load_data_or_exit()
    feats = None
    if _FEATURES.value:
        feats = load_features(_FEATURES.value, sample_ids=data.sample_ids)  # errors: exit 2
    strong = routing.strong_model(data.cost)
    out = {"strong_model": data.models[strong]}
    out["tasks"], warnings = task_diagnostics(
        data.quality, data.tasks, list(data.models), strong, feats, data.sample_ids
    )
    for line in warnings:
        logging.warning("%s", line)
    scales = np.array([float(v) for v in _SCALES.value])
    noise = routing.noise_injection(data.quality, data.cost, scales, strong_model=strong)
    out["noise_injection"] = {k: np.asarray(v).tolist() for k, v in noise.items()}
    if _JSON.value:
        common.print_json(out)
    else:
        print(readable(out))


def readable(out) -> str:
    """The diagnosis as text: one row per task, then the noise-injection curve."""
    cos = any("mean_within_task_cosine" in e for e in out["tasks"].values())
    head = ["task", "prompts", "top-2 tie share", "oracle quality", "strong quality"]
    head += ["best model"] + (["within-task cosine"] if cos else [])
    rows = []
    for task, e in out["tasks"].items():
        row = [task, e["n"], e["top2_tie_share"], e["oracle_quality"]]
        row += [e["strong_model_quality"], e["best_model"]]
        rows.append(row + ([e.get("mean_within_task_cosine")] if cos else []))
    noise = out["noise_injection"]
    curve = list(zip(noise["scale"], noise["strong_call_rate"], noise["quality"], strict=True))
    return "\n".join(
        [
            f"strong model: {out['strong_model']}",
            "",
            common.table(rows, head, floatfmt=".3f"),
            "",
            "noise injection (oracle scores + Gaussian noise; the largest budget):",
            common.table(curve, ["noise std", "strong call rate", "quality"], floatfmt=".3f"),
        ]
    )


if __name__ == "__main__":
    common.run(main)
