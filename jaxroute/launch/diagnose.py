r"""Why a router collapses: tie shares, noise injection and feature diversity per task.

    python -m jaxroute.launch.diagnose --data_path=../shared/data/routerbench_5shot_subset \
        --features=workdir_features.npy

Prints one JSON object (last line): per task the top-2 tie share, the oracle's and the
strong model's mean quality; the noise-injection curve (oracle scores + Gaussian noise
of growing scale -> the strong model's call rate at the largest budget); and, with
``--features`` (a .npy with a .ids beside it), the mean within-task cosine similarity of
the features (1.0 means every prompt of the task looks the same to a router).
"""

import json
import sys

import numpy as np
from absl import app, flags

from jaxroute import routing
from jaxroute.launch import common

_FEATURES = flags.DEFINE_string("features", None, "Optional features .npy (+ .ids).")
_SCALES = flags.DEFINE_list(
    "noise_scales", ["0", "0.001", "0.01", "0.03", "0.1", "0.3", "1"], "Noise std values."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    data = common.load_data_or_exit()
    feats = None
    if _FEATURES.value:
        from jaxroute.encoders import load_features

        try:
            feats = load_features(_FEATURES.value, sample_ids=data.sample_ids)
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    strong = routing.strong_model(data.cost)
    out = {"strong_model": data.models[strong], "tasks": {}}
    for task in data.task_names:
        rows = data.tasks == task
        q = data.quality[rows]
        s = np.sort(q, axis=1)
        entry = {
            "n": int(rows.sum()),
            "top2_tie_share": float((s[:, -1] == s[:, -2]).mean()),
            "oracle_quality": float(q.max(1).mean()),
            "strong_model_quality": float(q[:, strong].mean()),
            "best_model": data.models[int(q.mean(0).argmax())],
        }
        if feats is not None:
            x = feats[rows] / np.linalg.norm(feats[rows], axis=1, keepdims=True)
            centroid = x.mean(0)
            entry["mean_within_task_cosine"] = float(centroid @ centroid)
        out["tasks"][task] = entry
    scales = np.array([float(v) for v in _SCALES.value])
    noise = routing.noise_injection(data.quality, data.cost, scales, strong_model=strong)
    out["noise_injection"] = {k: np.asarray(v).tolist() for k, v in noise.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    app.run(main)
