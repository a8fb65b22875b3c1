"""What a run keeps in its workdir besides checkpoints: config.json, run_info.json and
metrics.jsonl, and the config helpers that read them back."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxroute import data as jdata
from jaxroute import encoders
from jaxroute._io import atomic_write_json, atomic_write_text
from jaxroute.train import _distributed as dist


class MetricWriter:
    """Appends one JSON object per line to ``workdir/metrics.jsonl`` (an append, not a
    rename: a line cut by a kill is dropped when the resumed run rewinds the file)."""

    def __init__(self, workdir: str | os.PathLike):
        self.path = pathlib.Path(workdir) / "metrics.jsonl"

    def write(self, **record: Any) -> None:
        if not dist.is_main():  # one writer: process 0
            return
        record = {k: _jsonable(v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def rewind(self, router: str, epoch: int) -> None:
        """Drops ``router``'s records after ``epoch`` (a resumed run writes them again).

        An epoch's record is written before its checkpoint, so a run killed between the two
        leaves a record that the resumed run replaces instead of doubling; the file is
        rewritten atomically.
        """
        if not dist.is_main() or not self.path.exists():
            return
        lines = self.path.read_text().splitlines(keepends=True)
        kept = []
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: dropped
                continue
            if rec.get("router") == router and int(rec.get("epoch", 0)) > epoch:
                continue
            kept.append(line if line.endswith("\n") else line + "\n")
        if kept != lines:
            atomic_write_text(self.path, "".join(kept))


def _jsonable(v):
    if isinstance(v, np.ndarray | jax.Array):
        return np.asarray(v).tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _config_json(config) -> dict:
    """The config as JSON values (tuples become lists), as config.json stores it."""
    return json.loads(json.dumps(config.to_dict(), default=list))


def write_config(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> pathlib.Path:
    """The resolved config as ``workdir/config.json``."""
    path = pathlib.Path(workdir) / "config.json"
    atomic_write_json(path, _config_json(config), sort_keys=True)
    return path


def check_resumable(config, workdir) -> None:
    """A workdir resumes only the run it holds: training fields must match config.json.

    ``eval`` and ``run_routers`` may change between runs (they do not touch checkpoints).
    """
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    new = _config_json(config)
    differ = sorted(
        k
        for k in set(old) | set(new)
        if k not in ("eval", "run_routers", "routers") and old.get(k) != new.get(k)
    )
    differ += sorted(
        f"routers.{k}"
        for k in set(old.get("routers", {})) & set(new.get("routers", {}))
        if old["routers"][k] != new["routers"][k]
    )
    if differ:
        raise ValueError(
            f"{workdir} holds a run with a different config ({', '.join(differ)} differ from "
            f"its config.json); resuming would mix the two. Use a new --workdir or delete it."
        )


def read_config(workdir) -> ml_collections.ConfigDict:
    """The resolved config a run wrote to ``workdir/config.json``.

    ``features.encoder_dtype`` is pinned to the mode the run embedded with
    (``run_info.json``'s ``encoder_dtype``), so that ``route``, ``serve``, ``calibrate``
    and ``evaluate`` on another machine embed as training did, not as ``auto`` resolves
    there; a run from before the field embedded in float32.
    """
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; is {workdir} a jaxroute workdir?")
    config = ml_collections.ConfigDict(json.loads(path.read_text()))
    if "features" in config:
        info_path = pathlib.Path(workdir) / "run_info.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        with config.unlocked():
            config.features.encoder_dtype = info.get(
                "encoder_dtype", config.features.get("encoder_dtype", "float32")
            )
    return config


def config_with_data(config, path: str, data_format: str | None = None):
    """A copy of ``config`` reading ``path`` instead."""
    other = ml_collections.ConfigDict(config.to_dict())
    other.data.path = path
    if data_format:
        other.data.format = data_format
    return other


def write_run_info(
    workdir, data: jdata.RoutingData, splits, encoder_dtype: str | None = None, encoder=None
) -> None:
    """What ``route`` needs to rebuild the routers without the data: names and shapes,
    and, when the features came from the encoder, which encoder (name, fingerprint,
    architecture, width, pooling) and its resolved matmul mode."""
    info = {
        "models": list(data.models),
        "feature_dim": int(data.features.shape[1]),
        "seeds": list(splits.seeds),
        "n_train": splits.train[0].num_prompts,
        "source": str(data.source),
    }
    if encoder_dtype is not None:
        info.update(encoders.encoder_record(encoder, encoder_dtype))
    atomic_write_json(pathlib.Path(workdir) / "run_info.json", info)


def best_epoch(workdir, router: str, epochs: int) -> int:
    """The epoch (1..``epochs``) of ``router``'s lowest mean validation loss in
    ``metrics.jsonl`` (the earliest on a tie): the checkpoint kept as the best."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    losses = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line)
        if rec.get("router") == router and "val_loss" in rec and rec["epoch"] <= epochs:
            losses[int(rec["epoch"])] = float(np.mean(rec["val_loss"]))
    if not losses:
        raise ValueError(
            f"{path}: no validation loss of '{router}' (eval.checkpoint='best' needs a run "
            "with train.val_fraction > 0)"
        )
    return min(sorted(losses), key=losses.__getitem__)


def router_names(config) -> list[str]:
    """Routers to run: ``config.run_routers`` (comma list) or every configured one."""
    names = [n.strip() for n in str(config.get("run_routers", "")).split(",") if n.strip()]
    names = names or list(config.routers.keys())
    unknown = [n for n in names if n not in config.routers]
    if unknown:
        raise ValueError(
            f"config.run_routers names unknown routers {unknown}; configured: "
            f"{list(config.routers.keys())}"
        )
    return names
