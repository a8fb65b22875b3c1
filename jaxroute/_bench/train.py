"""Speed figures of training, each as a ratio against a baseline measured in the same run."""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import numpy as np

from jaxroute import data as jdata
from jaxroute._bench import _common, torch_equirouter
from jaxroute.configs import base
from jaxroute.train import _trainer as T
from jaxroute.train.experiment import build_task


def _equirouter_task(
    num_models: int, *, fast: bool = True, small: bool = False, matmul_dtype: str = "float32"
) -> T.Task:
    """EquiRouter with its reference objective and schedule, as the trainer builds it."""
    kw = dict(trunk_sizes=(64, 32, 32), embed_dim=16, head_size=32) if small else {}
    kw.update(fast=fast, matmul_dtype=matmul_dtype)
    rc = base.router("equirouter", "equirouter", model_kwargs=kw)
    return build_task(rc, num_models, base.get_config().train, n_train=1)


def _cost_task(num_models: int) -> T.Task:
    """The cost network (raw-USD MSE), as the trainer builds it for the budget rule."""
    cfg = base.get_config()
    return build_task(cfg.cost_model, num_models, cfg.train, n_train=1)


def _stacked(train, k: int) -> dict:
    """The training table repeated for K routers, ``[K, N, ...]`` (as groups.py stacks it)."""
    data = {
        "x": np.broadcast_to(train.features, (k, *train.features.shape)),
        "quality": np.broadcast_to(train.quality, (k, *train.quality.shape)),
        "cost": np.broadcast_to(train.cost, (k, *train.cost.shape)),
    }
    return jax.tree.map(jax.numpy.asarray, data)


def _group_runner(task, seeds, train, epochs, batch_size, strategy="auto"):
    """``run()`` trains len(seeds) routers as one group (``compiled_epoch(task, strategy)``)
    from scratch and returns each router's last-epoch mean training loss ``[K]``;
    ``run(other_seeds)`` does the same for as many other seeds, without recompiling."""
    data = _stacked(train, len(seeds))
    fn = T.compiled_epoch(task, strategy)
    n, d = train.num_prompts, train.features.shape[1]

    def run(run_seeds=None) -> np.ndarray:
        run_seeds = seeds if run_seeds is None else run_seeds
        if len(run_seeds) != len(seeds):
            raise ValueError(f"{len(run_seeds)} seeds for a group of {len(seeds)}")
        state = T.init_states(task, run_seeds, d)
        for e in range(epochs):
            parts = [T.epoch_indices(n, batch_size, s, e) for s in run_seeds]
            idx = np.stack([p[0] for p in parts])
            valid = np.stack([p[1] for p in parts])
            state, losses = fn(state, data, idx, valid)
        weights = valid.sum(axis=2)  # [K, S] valid rows per batch
        return np.sum(np.asarray(losses) * weights, axis=1) / weights.sum(axis=1)

    run.strategy = lambda: fn.strategy(
        T.init_states(task, seeds, d), data, np.zeros((len(seeds), 1, batch_size), np.int32)
    )
    return run


def _run(task, seeds, train, epochs, batch_size, strategy="auto"):
    """Trains len(seeds) routers as one group; returns seconds (after compile)."""
    run = _group_runner(task, seeds, train, epochs, batch_size, strategy)
    run()  # compile
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def bench_train_vmap(
    k: int = 8,
    n_prompts: int = 2048,
    epochs: int = 2,
    batch_size: int = 128,
    small: bool = False,
    *,
    rounds: int = 2,
    compare_vmap: bool = True,
) -> dict[str, Any]:
    """K EquiRouters in one compiled epoch against K sequential single runs (same work).

    The group runs ``compiled_epoch``'s automatic layout (CPU lanes for full-size routers,
    vmap for small ones or on accelerators); the baseline trains the K routers one after
    another, each un-vmapped (K = 1). The two sides alternate for ``rounds`` rounds after
    a compiling run each; the ratio is of median times (sequential / fused). With
    ``compare_vmap`` the plain vmapped group is timed in the same rounds
    (``vmap_ratio``). The check: each router's last-epoch mean training loss, fused
    against its own sequential run (``final_loss_max_rel_gap``).
    """
    train = jdata.synthetic(n_prompts=n_prompts, seed=0, feature_dim=384)
    task = _equirouter_task(train.num_models, small=small)
    seeds = list(range(k))
    fused = _group_runner(task, seeds, train, epochs, batch_size)
    singles = [_group_runner(task, [s], train, epochs, batch_size) for s in seeds]
    losses: dict[str, np.ndarray] = {}

    def run_fused():
        losses["fused"] = fused()

    def run_sequential():
        losses["sequential"] = np.concatenate([one() for one in singles])

    strategy = fused.strategy()
    fns = {"fused": run_fused, "sequential": run_sequential}
    if compare_vmap and strategy != "vmap":
        vmapped = _group_runner(task, seeds, train, epochs, batch_size, "vmap")
        fns["vmap"] = lambda: losses.__setitem__("vmap", vmapped())
    t0 = time.perf_counter()
    for fn in fns.values():  # compile (and a first run)
        fn()
    compile_s = time.perf_counter() - t0
    times = _common.interleaved(fns, rounds)
    base_s = _common.median(times["sequential"])
    jax_s = _common.median(times["fused"])
    gap = np.abs(losses["fused"] - losses["sequential"]) / np.abs(losses["sequential"])
    out: dict[str, Any] = {
        "ratio": base_s / jax_s,
        "baseline_s": base_s,
        "jaxroute_s": jax_s,
        "k": k,
        "strategy": strategy,
        "threads": _common.cpu_threads(),
        "lanes": T.cpu_lanes(),
        "final_loss": {k_: v.tolist() for k_, v in losses.items()},
        "final_loss_max_rel_gap": float(gap.max()),
        "times_s": times,
        "compile_and_first_runs_s": compile_s,
        "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "peak_mem_mb": _common.maxrss_mb(),
        "what": f"{k} EquiRouters{' (small)' if small else ''} x {epochs} epochs x "
        f"{n_prompts} prompts, batch {batch_size}: one compiled group "
        f"({strategy}) vs {k} sequential runs",
    }
    if "vmap" in times:
        out["vmap_ratio"] = base_s / _common.median(times["vmap"])
    return out


def bench_equirouter_head(n_prompts: int = 7300, epochs: int = 1, batch_size: int = 128) -> dict:
    """EquiRouter training with the folded head (fast) against the plain 2048-wide head."""
    train = jdata.synthetic(n_prompts=n_prompts, seed=0, feature_dim=384)
    fast = _run(_equirouter_task(train.num_models, fast=True), [0], train, epochs, batch_size)
    plain = _run(_equirouter_task(train.num_models, fast=False), [0], train, epochs, batch_size)
    return {
        "ratio": plain / fast,
        "baseline_s": plain,
        "jaxroute_s": fast,
        "peak_mem_mb": _common.maxrss_mb(),
        "threads": _common.cpu_threads(),
        "what": f"EquiRouter {epochs} epoch(s) of {n_prompts} prompts, batch {batch_size}: "
        "plain head vs folded head",
    }


def bench_equirouter_train(
    n_prompts: int = 7300,
    epochs: int = 5,
    batch_size: int = 128,
    *,
    rounds: int = 2,
    compare_torch: bool = True,
    compare_bf16: bool = True,
) -> dict[str, Any]:
    """EquiRouter training (cost net, then score net) against a PyTorch EquiRouter.

    Same synthetic data (``n_prompts`` x 384 features x 11 models), epochs, batch size,
    optimiser (Adam 1e-4) and CPU threads; the two sides alternate for ``rounds`` rounds
    and the ratio of median times is reported (torch / jaxroute). The check: the last
    epoch's mean training loss of both networks on both sides, and their relative gap.

    ``ratio`` is jaxroute's default, float32. With ``compare_bf16`` the same job with the
    score net's opt-in ``matmul_dtype="bfloat16"`` (bf16 GEMM operands, f32 accumulation;
    the cost net is unchanged) is timed in the same rounds, beside it: ``bf16_ratio``
    (torch / bf16), ``bf16_speedup`` (f32 / bf16), and its check: the score net's final
    loss against float32's at the same seed (``bf16_final_loss_rel_gap``) next to
    float32's own seed-to-seed gap (seed 43 against 42, ``f32_seed_rel_gap``; one more
    untimed score-net run).

    Returns:
      dict: ``ratio`` (None without torch, then ``why``), ``baseline_s``, ``jaxroute_s``,
      ``jaxroute_first_call_s`` (with compilation), ``final_loss`` (per side and net),
      ``threads``, ``what``; with ``compare_bf16`` also ``jaxroute_bf16_s``,
      ``bf16_speedup``, ``bf16_ratio`` (None without torch), ``bf16_final_loss_rel_gap``
      and ``f32_seed_rel_gap``.
    """
    train = jdata.synthetic(n_prompts=n_prompts, seed=0, feature_dim=384)
    # One router each (K = 1: the un-vmapped epoch), seed 42; run() returns its loss [1].
    train_cost = _group_runner(_cost_task(train.num_models), [42], train, epochs, batch_size)
    train_score = _group_runner(_equirouter_task(train.num_models), [42], train, epochs, batch_size)
    threads = _common.cpu_threads()
    losses: dict[str, dict[str, float]] = {}

    def run_jax():
        losses["jaxroute"] = {
            "cost_loss": float(train_cost()[0]),
            "score_loss": float(train_score()[0]),
        }

    t0 = time.perf_counter()
    run_jax()
    first_s = time.perf_counter() - t0
    fns = {"jaxroute": run_jax}
    if compare_bf16:
        bf16_task = _equirouter_task(train.num_models, matmul_dtype="bfloat16")
        train_score_bf16 = _group_runner(bf16_task, [42], train, epochs, batch_size)

        def run_jax_bf16():
            losses["jaxroute_bf16"] = {
                "cost_loss": float(train_cost()[0]),
                "score_loss": float(train_score_bf16()[0]),
            }

        run_jax_bf16()  # compile
        fns["jaxroute_bf16"] = run_jax_bf16
    torch, why = _common.import_torch(threads) if compare_torch else (None, "compare_torch=False")
    if torch is not None:

        def run_torch():
            losses["torch"] = torch_equirouter.train(
                torch,
                train.features,
                train.quality,
                train.cost,
                epochs=epochs,
                batch_size=batch_size,
            )

        t0 = time.perf_counter()  # warm-up: torch's first steps pay one-off set-up
        torch_equirouter.train(
            torch, train.features[:256], train.quality[:256], train.cost[:256], epochs=1
        )
        out_first = time.perf_counter() - t0
        fns["torch"] = run_torch
    times = _common.interleaved(fns, rounds)
    jax_s = _common.median(times["jaxroute"])
    out: dict[str, Any] = {
        "ratio": None,
        "jaxroute_s": jax_s,
        "jaxroute_first_call_s": first_s,
        "baseline_s": None,
        "final_loss": losses,
        "threads": threads,
        "peak_mem_mb": _common.maxrss_mb(),
        "what": f"EquiRouter + cost net, {epochs} epochs x {n_prompts} prompts x 384 x "
        f"{train.num_models}, batch {batch_size}: PyTorch / jaxroute",
    }
    if compare_bf16:
        bf16_s = _common.median(times["jaxroute_bf16"])
        f32_loss = losses["jaxroute"]["score_loss"]
        out.update(
            jaxroute_bf16_s=bf16_s,
            bf16_speedup=jax_s / bf16_s,
            bf16_ratio=None,
            bf16_final_loss_rel_gap=abs(losses["jaxroute_bf16"]["score_loss"] - f32_loss)
            / abs(f32_loss),
            f32_seed_rel_gap=abs(float(train_score([43])[0]) - f32_loss) / abs(f32_loss),
        )
    if torch is None:
        out["why"] = f"no ratio: {why}"
        return out
    base_s = _common.median(times["torch"])
    out.update(ratio=base_s / jax_s, baseline_s=base_s, torch_warmup_s=out_first)
    if compare_bf16:
        out["bf16_ratio"] = base_s / out["jaxroute_bf16_s"]
    out["final_loss_rel_gap"] = {
        k: abs(losses["jaxroute"][k] - losses["torch"][k]) / abs(losses["torch"][k])
        for k in ("cost_loss", "score_loss")
    }
    return out
