r"""Speed figures, each a ratio against a baseline measured in the same run.

    python -m jaxroute.launch.benchmark --only=sweep,train_vmap,equirouter_head,encoder

The last line of stdout is one JSON object
``{NAME: {"ratio", "baseline_s", "jaxroute_s", "peak_mem_mb", ...}}``.
"""

import json

import jax
from absl import app, flags, logging

from jaxroute.launch import common

_ONLY = flags.DEFINE_list(
    "only",
    ["sweep", "train_vmap", "train_vmap_small", "equirouter_head", "encoder"],
    "Which benchmarks to run.",
)
_QUICK = flags.DEFINE_bool("quick", False, "Small sizes (a smoke run, not a measurement).")


def _benchmarks(quick: bool):
    from jaxroute.train import bench

    def sweep():
        from jaxroute.routing import bench_sweep

        return bench_sweep(n_budgets=50, n_prompts=2000) if quick else bench_sweep()

    def train_vmap():
        if quick:
            return bench.bench_train_vmap(k=2, n_prompts=256, epochs=1, small=True)
        return bench.bench_train_vmap()

    def train_vmap_small():
        # A small EquiRouter (trunk 64-32-32): per-step overhead, not FLOPs, dominates.
        return bench.bench_train_vmap(
            k=2 if quick else 8,
            n_prompts=256 if quick else 2048,
            epochs=1 if quick else 5,
            small=True,
        )

    def equirouter_head():
        return bench.bench_equirouter_head(n_prompts=512 if quick else 7300)

    def encoder():
        from jaxroute._bench.encoder import bench_encoder

        return bench_encoder(n_prompts=8, rounds=1) if quick else bench_encoder()

    def serve():  # not in the default --only: it trains a tiny workdir and starts servers
        from jaxroute.serving.bench import bench_serve

        return bench_serve(quick=quick)

    def lambda_sweep():  # the λ rule over every breakpoint vs a NumPy loop
        from jaxroute.routing.lambda_bench import bench_lambda_sweep

        return bench_lambda_sweep(n_prompts=2000 if quick else 36000)

    return {
        "serve": serve,
        "lambda_sweep": lambda_sweep,
        "sweep": sweep,
        "train_vmap": train_vmap,
        "train_vmap_small": train_vmap_small,
        "equirouter_head": equirouter_head,
        "encoder": encoder,
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.info("JAX devices: %s", jax.devices())
    table = _benchmarks(_QUICK.value)
    unknown = [n for n in _ONLY.value if n not in table]
    if unknown:
        raise app.UsageError(f"--only: unknown {unknown}; choose from {sorted(table)}")
    results = {}
    for name in _ONLY.value:
        res = table[name]()
        res["device"] = jax.devices()[0].platform
        results[name] = res
        print(f"{name}: ratio {res.get('ratio')} ({res.get('what', '')})", flush=True)
    print(json.dumps(results, default=float))


if __name__ == "__main__":
    common.run(main)
