r"""Speed figures, each a ratio against a baseline measured in the same run.

    python -m jaxroute.launch.benchmark --only=encoder,equirouter_train,train_vmap

``encoder`` and ``equirouter_train`` compare against sentence-transformers / a PyTorch
EquiRouter when torch is importable (install line: README, "Speed"); without it they
print jaxroute's own figure and why there is no ratio. Every line before the last is
one human-readable result; the last line of stdout is one JSON object
``{NAME: {"ratio", "threads", ...}}``. A new benchmark is one function and one line of
``BENCHMARKS`` (each function takes ``quick`` and returns a dict with ``ratio``).
"""

import json
import math

import jax
from absl import app, flags, logging

from jaxroute._bench.encoder import bench_encoder
from jaxroute._bench.lambda_sweep import bench_lambda_sweep
from jaxroute._bench.multiprocess import bench_multiprocess
from jaxroute._bench.serve import bench_serve
from jaxroute._bench.sweep import bench_sweep
from jaxroute._bench.train import bench_equirouter_head, bench_equirouter_train, bench_train_vmap
from jaxroute.launch import common


def _sweep(quick):
    return bench_sweep(n_budgets=50, n_prompts=2000) if quick else bench_sweep()


def _train_vmap(quick):
    if quick:
        return bench_train_vmap(k=2, n_prompts=256, epochs=1, small=True, rounds=1)
    return bench_train_vmap()


def _train_vmap_small(quick):
    # A small EquiRouter (trunk 64-32-32): per-step overhead, not FLOPs, dominates.
    if quick:
        return bench_train_vmap(k=2, n_prompts=256, epochs=1, small=True, rounds=1)
    return bench_train_vmap(k=8, n_prompts=2048, epochs=5, small=True)


def _equirouter_head(quick):
    return bench_equirouter_head(n_prompts=512 if quick else 7300)


def _equirouter_train(quick):
    if quick:
        return bench_equirouter_train(n_prompts=256, epochs=1, rounds=1)
    return bench_equirouter_train()


def _encoder(quick):
    return bench_encoder(n_prompts=8, rounds=1, min_seconds=0) if quick else bench_encoder()


def _serve(quick):  # not in the default --only: it trains a tiny workdir and starts servers
    return bench_serve(quick=quick)


def _lambda_sweep(quick):  # the λ rule over every breakpoint vs a NumPy loop
    return bench_lambda_sweep(n_prompts=2000 if quick else 36000)


def _multiprocess(quick):  # not in the default --only: the main job on 1 and on 2 processes
    return bench_multiprocess(quick)


BENCHMARKS = {
    "encoder": _encoder,
    "equirouter_train": _equirouter_train,
    "train_vmap": _train_vmap,
    "train_vmap_small": _train_vmap_small,
    "equirouter_head": _equirouter_head,
    "sweep": _sweep,
    "lambda_sweep": _lambda_sweep,
    "serve": _serve,
    "multiprocess": _multiprocess,
}

_ONLY = flags.DEFINE_list(
    "only",
    ["encoder", "equirouter_train", "train_vmap", "train_vmap_small", "equirouter_head", "sweep"],
    f"Which benchmarks to run, of {sorted(BENCHMARKS)}.",
)
_QUICK = flags.DEFINE_bool("quick", False, "Small sizes (a smoke run, not a measurement).")
_JSON = common.define_json()


def _num(v, digits=3):
    return f"{v:.{digits}g}" if isinstance(v, int | float) and math.isfinite(v) else str(v)


def summary_line(name: str, res: dict) -> str:
    """One rounded human line: ratio (or why there is none), what, threads, check."""
    ratio = res.get("ratio")
    head = f"{name}: ratio {ratio:.2f}x" if isinstance(ratio, int | float) else f"{name}: no ratio"
    parts = [res.get("what", "")]
    if ratio is None and res.get("why"):
        parts.append(str(res["why"]))
    if "threads" in res:
        parts.append(f"threads {res['threads']}")
    if "parity_min_cosine" in res:
        parts.append(f"parity min cosine {res['parity_min_cosine']:.7f}")
    if "final_loss_rel_gap" in res:
        gaps = ", ".join(f"{k} {_num(v, 2)}" for k, v in res["final_loss_rel_gap"].items())
        parts.append(f"final-loss relative gap vs torch: {gaps}")
    if "bf16_speedup" in res:  # equirouter_train's opt-in bf16 matmuls, beside the f32 ratio
        bf16 = res.get("bf16_ratio")
        head_bf16 = f"{bf16:.2f}x" if isinstance(bf16, int | float) else "no ratio"
        parts.append(
            f"bf16 matmuls {head_bf16} ({res['bf16_speedup']:.2f}x f32; score-loss gap to "
            f"f32 {_num(res['bf16_final_loss_rel_gap'], 2)}, f32 seed-to-seed "
            f"{_num(res['f32_seed_rel_gap'], 2)})"
        )
    if "vmap_ratio" in res:
        parts.append(f"plain vmap {res['vmap_ratio']:.2f}x")
    if "final_loss_max_rel_gap" in res:
        gap = _num(res["final_loss_max_rel_gap"], 2)
        parts.append(f"final-loss max relative gap to the sequential runs {gap}")
    for key in ("jaxroute_first_call_s", "compile_s"):
        if isinstance(res.get(key), int | float):
            parts.append(f"{key} {res[key]:.1f}")
    return f"{head} ({'; '.join(p for p in parts if p)})"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.info("JAX devices: %s", jax.devices())
    unknown = [n for n in _ONLY.value if n not in BENCHMARKS]
    if unknown:
        raise app.UsageError(f"--only: unknown {unknown}; choose from {sorted(BENCHMARKS)}")
    results = {}
    for name in _ONLY.value:
        res = BENCHMARKS[name](_QUICK.value)
        res["device"] = jax.devices()[0].platform
        results[name] = res
        if not _JSON.value:  # --json: the JSON object alone
            print(summary_line(name, res), flush=True)
    print(json.dumps(results, default=float))


if __name__ == "__main__":
    common.run(main)
