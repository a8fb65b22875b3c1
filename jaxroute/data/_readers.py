"""Readers: RouterBench wide and long forms and a generic .npy form (see ``_load``).

Every reader validates its input and raises :class:`DataError` naming the file, the
column and the sample id of the first problem.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib

import numpy as np
import pandas as pd
from absl import logging

from jaxroute.data._pickle import read_pickle_frame
from jaxroute.data._types import DataError, RoutingData

WIDE_SUFFIXES = (".pkl", ".pickle", ".csv", ".parquet")
COST_SUFFIX = "|total_cost"
RESPONSE_SUFFIX = "|model_response"
META_COLUMNS = ("sample_id", "prompt", "eval_name", "oracle_model_to_route_to")
LONG_COLUMNS = ("sample_id", "model_name", "prompt", "eval_name", "performance", "cost")


# ---------------------------------------------------------------------- file forms
def read_files(
    path: str | os.PathLike, data_format: str = "auto", *, drop_incomplete: bool = False
) -> RoutingData:
    """Reads a file or folder in one of the file forms: ``wide``, ``long``, ``generic``.

    ``data_format="auto"`` detects the form (:func:`detect_format`). The dispatcher by
    name, with the synthetic and TFDS readers, is :func:`jaxroute.data.load_data`.
    """
    p = pathlib.Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    fmt = detect_format(p) if data_format == "auto" else data_format
    if fmt == "generic":
        return read_generic(p)
    files = _list_files(p)
    frames = [(f, _read_table(f)) for f in files]
    reader = read_long_frames if fmt == "long" else read_wide_frames
    return reader(frames, drop_incomplete=drop_incomplete, source=str(p))


def detect_format(p: pathlib.Path) -> str:
    """``generic``, ``long`` or ``wide`` from the path and the first file's columns."""
    if p.suffix == ".npz" or (p.is_dir() and (p / "quality.npy").exists()):
        return "generic"
    first = _list_files(p)[0]
    columns = set(_read_table(first, nrows=5).columns)
    if {"model_name", "performance"} <= columns:
        return "long"
    return "wide"


def _list_files(p: pathlib.Path) -> list[pathlib.Path]:
    if p.is_file():
        if p.suffix not in WIDE_SUFFIXES:
            raise DataError(f"{p}: unsupported file type (expected one of {WIDE_SUFFIXES})")
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in WIDE_SUFFIXES)
    if not files:
        raise DataError(f"{p}: folder holds no {'/'.join(WIDE_SUFFIXES)} files")
    return files


def _read_table(f: pathlib.Path, nrows: int | None = None) -> pd.DataFrame:
    try:
        if f.suffix == ".csv":
            df = pd.read_csv(f, nrows=nrows)
        elif f.suffix == ".parquet":
            df = pd.read_parquet(f)
        else:  # never pd.read_pickle: a pickle can run code (see _pickle.py)
            df = read_pickle_frame(f)
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(_not_utf8(f)) from None
    except Exception as e:  # noqa: BLE001 - any parser failure becomes a DataError
        msg = str(e).splitlines()[0] if str(e) else ""
        raise DataError(f"{f}: cannot be read ({type(e).__name__}: {msg})") from None
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{f}: expected a table (DataFrame), got {type(df).__name__}")
    if len(df) == 0:  # header-only: nothing to route, and metrics need >= 1 prompt
        raise DataError(
            f"{f}: no data rows (the table has only a header: {len(df.columns)} columns)"
        )
    return df if nrows is None else df.head(nrows)


def _not_utf8(f: pathlib.Path) -> str:
    """Where a CSV stops being UTF-8: data row (from 0, as in every reader message),
    column and sample id, found with the csv module so quoted newlines count right."""
    with f.open(newline="", encoding="utf-8", errors="surrogateescape") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        sid = header.index("sample_id") if "sample_id" in header else 0
        for where, rec in enumerate([header, *reader]):
            for j, v in enumerate(rec):
                bad = [c for c in v if 0xDC80 <= ord(c) <= 0xDCFF]
                if bad:
                    col = header[j] if where and j < len(header) else f"#{j}"
                    sid_text = (
                        rec[sid].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    )
                    row = "header" if where == 0 else f"row {where - 1}, sample id {sid_text!r}"
                    return (
                        f"{f}: {row}, column '{col}': byte 0x{ord(bad[0]) - 0xDC00:02x} is not "
                        "UTF-8 (save the file as UTF-8)"
                    )
    return f"{f}: not UTF-8 text (save the file as UTF-8)"


def _numeric(df: pd.DataFrame, column: str, f, ids: np.ndarray) -> np.ndarray:
    """Column as float64 (missing -> NaN); an unparsable cell is a DataError."""
    raw = df[column]
    num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(num) & raw.notna().to_numpy() & (raw.astype(str).str.strip() != "").to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{f}: column '{column}', sample id '{ids[i]}' (row {i}): cannot parse "
            f"{raw.iloc[i]!r} as a number"
        )
    return num


def _ids(df: pd.DataFrame, f) -> np.ndarray:
    for col in ("sample_id", "eval_name"):
        if col not in df.columns:
            raise DataError(f"{f}: required column '{col}' is missing")
    ids = df["sample_id"]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise DataError(f"{f}: column 'sample_id' is empty at row {row}")
    return ids.astype(str).to_numpy()


# ---------------------------------------------------------------------- wide form
def _wide_models(df: pd.DataFrame, f) -> list[str]:
    cost_models = [c[: -len(COST_SUFFIX)] for c in df.columns if c.endswith(COST_SUFFIX)]
    skip = set(META_COLUMNS) | {c for c in df.columns if "|" in c or c.startswith("Unnamed")}
    quality_models = [c for c in df.columns if c not in skip and c != "index"]
    for m in cost_models:
        if m not in df.columns:
            raise DataError(f"{f}: quality column '{m}' is missing (its '{m}{COST_SUFFIX}' exists)")
    for m in quality_models:
        if m + COST_SUFFIX not in df.columns:
            raise DataError(f"{f}: cost column '{m}{COST_SUFFIX}' is missing")
    if not cost_models:
        raise DataError(f"{f}: no '<model>{COST_SUFFIX}' columns: not a RouterBench wide table")
    return cost_models


def read_wide_frames(frames, *, drop_incomplete: bool = False, source: str | None = None):
    """Merges RouterBench wide tables (one per file) into RoutingData by sample id."""
    models = None
    cells = []  # per file: ids, eval_name, prompt, quality [n, M], cost [n, M]
    for f, df in frames:
        file_models = _wide_models(df, f)
        if models is None:
            models = file_models
        elif set(file_models) != set(models):
            missing = sorted(set(models) - set(file_models))
            extra = sorted(set(file_models) - set(models))
            raise DataError(
                f"{f}: model columns differ from the first file: missing {missing}, extra {extra}"
            )
        ids = _ids(df, f)
        q = np.stack([_numeric(df, m, f, ids) for m in models], axis=1)
        c = np.stack([_numeric(df, m + COST_SUFFIX, f, ids) for m in models], axis=1)
        prompts = df["prompt"].to_numpy(dtype=object) if "prompt" in df else None
        cells.append((f, ids, df["eval_name"].astype(str).to_numpy(), prompts, q, c))
    return _merge(cells, models, drop_incomplete=drop_incomplete, source=source)


def _merge(cells, models, *, drop_incomplete, source):
    """Merge rows by sample id: each model's cells come from the row holding its quality."""
    f_of = np.concatenate([np.full(len(ids), str(f), dtype=object) for f, ids, *_ in cells])
    row_of = np.concatenate([np.arange(len(ids)) for _, ids, *_ in cells])  # row in its file
    ids = np.concatenate([c[1] for c in cells])
    tasks = np.concatenate([c[2] for c in cells])
    have_prompts = all(c[3] is not None for c in cells)
    prompts = np.concatenate([c[3] for c in cells]) if have_prompts else None
    q = np.concatenate([c[4] for c in cells])
    cost = np.concatenate([c[5] for c in cells])
    has_q = ~np.isnan(q)
    # A quality without its cost (or a non-finite cost) is an error at that cell.
    bad_cost = has_q & ~np.isfinite(cost)
    if bad_cost.any():
        i, j = np.argwhere(bad_cost)[0]
        what = "empty (NaN)" if np.isnan(cost[i, j]) else f"{cost[i, j]} (not finite)"
        raise DataError(
            f"{f_of[i]}: column '{models[j]}{COST_SUFFIX}', sample id '{ids[i]}' (row "
            f"{row_of[i]}): cost is {what} while quality is {q[i, j]}"
        )
    uniq, inverse = np.unique(ids, return_inverse=True)
    n, m = len(uniq), len(models)
    out_q = np.full((n, m), np.nan)
    out_c = np.full((n, m), np.nan)
    best_row = np.full(n, -1)
    best_count = np.full(n, -1)
    counts = has_q.sum(axis=1)
    for r in range(len(ids)):  # file order: the first row holding a model's quality wins
        g = inverse[r]
        for j in np.flatnonzero(has_q[r]):
            if np.isnan(out_q[g, j]):
                out_q[g, j], out_c[g, j] = q[r, j], cost[r, j]
            elif out_q[g, j] != q[r, j]:
                raise DataError(
                    f"{f_of[r]}: column '{models[j]}', sample id '{ids[r]}': quality "
                    f"{q[r, j]} conflicts with {out_q[g, j]} in another row of the same id"
                )
        if counts[r] > best_count[g]:
            best_row[g], best_count[g] = r, counts[r]
    missing = np.isnan(out_q)
    keep = ~missing.any(axis=1)
    if not keep.all():
        g = int(np.flatnonzero(~keep)[0])
        r = best_row[g]
        if not drop_incomplete:
            cols = [models[j] for j in np.flatnonzero(missing[g])]
            raise DataError(
                f"{f_of[r]}: sample id '{uniq[g]}' (row {row_of[r]}): column(s) {cols} empty "
                f"(NaN) in every row of that id ({int((~keep).sum())} incomplete samples; pass "
                "drop_incomplete / --drop_incomplete to drop them)"
            )
        logging.warning("%s: dropped %d incomplete samples", source, int((~keep).sum()))
    # Keep the first-appearance order of ids (stable, reproducible).
    first_seen = np.full(n, len(ids))
    np.minimum.at(first_seen, inverse, np.arange(len(ids)))
    rank = np.argsort(first_seen, kind="stable")
    rank = rank[keep[rank]]
    rows = best_row[rank]
    return RoutingData(
        quality=out_q[rank],
        cost=out_c[rank],
        models=tuple(models),
        tasks=tasks[rows],
        sample_ids=uniq[rank],
        prompts=None if prompts is None else prompts[rows],
        source=source,
    )


# ---------------------------------------------------------------------- long form
def read_long_frames(frames, *, drop_incomplete: bool = False, source: str | None = None):
    """RouterBench raw long form: one row per (sample_id, model_name)."""
    models: list[str] = []
    parts = []
    for f, df in frames:
        missing = [c for c in LONG_COLUMNS if c not in df.columns and c != "prompt"]
        if missing:
            raise DataError(f"{f}: required column(s) {missing} missing (long form)")
        ids = _ids(df, f)
        names = df["model_name"].astype(str).to_numpy()
        perf = _numeric(df, "performance", f, ids)
        cost = _numeric(df, "cost", f, ids)
        for col, v in (("performance", perf), ("cost", cost)):
            if np.isnan(v).any():
                i = int(np.flatnonzero(np.isnan(v))[0])
                raise DataError(
                    f"{f}: column '{col}', sample id '{ids[i]}' (row {i}): value is empty (NaN)"
                )
        for name in dict.fromkeys(names):
            if name not in models:
                models.append(name)
        parts.append((f, ids, names, perf, cost, df))
    cells = []
    for f, ids, names, perf, cost, df in parts:
        col = np.array([models.index(x) for x in names])
        n = len(ids)
        q = np.full((n, len(models)), np.nan)
        c = np.full((n, len(models)), np.nan)
        q[np.arange(n), col] = perf
        c[np.arange(n), col] = cost
        prompts = df["prompt"].to_numpy(dtype=object) if "prompt" in df else None
        cells.append((f, ids, df["eval_name"].astype(str).to_numpy(), prompts, q, c))
    return _merge(cells, models, drop_incomplete=drop_incomplete, source=source)


# ---------------------------------------------------------------------- generic form
def read_generic(p: pathlib.Path) -> RoutingData:
    """Quality and cost matrices as .npy (or one .npz) plus a models list.

    A folder holds ``quality.npy`` and ``cost.npy`` (``[N, M]``), ``models.txt`` (one name
    a line) or ``models.json``, and optionally ``tasks.txt``, ``sample_ids.txt``,
    ``features.npy`` and ``prompts.jsonl``. An ``.npz`` holds the same keys.
    """

    def arr(name, required=True):
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if name in z:
                    return z[name]
        else:
            f = p / f"{name}.npy"
            if f.exists():
                try:
                    return np.load(f, allow_pickle=False)
                except Exception as e:  # noqa: BLE001
                    raise DataError(f"{f}: cannot be read ({e})") from None
        if required:
            raise DataError(f"{p}: '{name}' is missing")
        return None

    def lines(name):
        if p.suffix == ".npz":
            v = arr(name, required=False)
            return None if v is None else [str(x) for x in v.tolist()]
        f = p / f"{name}.txt"
        if f.exists():
            return [ln for ln in f.read_text().splitlines() if ln.strip()]
        if name == "models" and (p / "models.json").exists():
            return [str(x) for x in json.loads((p / "models.json").read_text())]
        return None

    quality, cost = arr("quality"), arr("cost")
    models = lines("models")
    if models is None:
        raise DataError(f"{p}: 'models' list (models.txt or models.json) is missing")
    n = np.shape(quality)[0]
    ids = lines("sample_ids") or [str(i) for i in range(n)]
    tasks = lines("tasks") or ["default"] * n
    prompts = None
    if p.is_dir() and (p / "prompts.jsonl").exists():
        prompts = [json.loads(ln) for ln in (p / "prompts.jsonl").read_text().splitlines() if ln]
    return RoutingData(
        quality=quality,
        cost=cost,
        models=models,
        tasks=tasks,
        sample_ids=ids,
        features=arr("features", required=False),
        prompts=prompts,
        source=str(p),
    )


def write_generic(data: RoutingData, folder: str | os.PathLike) -> pathlib.Path:
    """Writes ``data`` in the generic folder form (round-trips through read_generic)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "quality.npy", data.quality)
    np.save(folder / "cost.npy", data.cost)
    (folder / "models.txt").write_text("\n".join(data.models) + "\n")
    (folder / "tasks.txt").write_text("\n".join(data.tasks.tolist()) + "\n")
    (folder / "sample_ids.txt").write_text("\n".join(data.sample_ids.tolist()) + "\n")
    if data.features is not None:
        np.save(folder / "features.npy", data.features)
    if data.prompts is not None:
        (folder / "prompts.jsonl").write_text(
            "".join(json.dumps(str(x)) + "\n" for x in data.prompts)
        )
    return folder


def to_wide_frame(data: RoutingData) -> pd.DataFrame:
    """RouterBench wide table of ``data`` (responses left empty)."""
    cols: dict = {
        "sample_id": data.sample_ids,
        "prompt": data.prompts if data.prompts is not None else [""] * data.num_prompts,
        "eval_name": data.tasks,
    }
    for j, m in enumerate(data.models):
        cols[m] = data.quality[:, j].astype(np.float64)
    for j, m in enumerate(data.models):
        cols[m + COST_SUFFIX] = data.cost[:, j].astype(np.float64)
    return pd.DataFrame(cols)


def to_long_frame(data: RoutingData) -> pd.DataFrame:
    """RouterBench raw long table of ``data``: one row per (sample, model)."""
    n, m = data.quality.shape
    prompts = data.prompts if data.prompts is not None else np.array([""] * n, dtype=object)
    return pd.DataFrame(
        {
            "sample_id": np.repeat(data.sample_ids, m),
            "model_name": np.tile(np.array(data.models, dtype=object), n),
            "prompt": np.repeat(prompts, m),
            "eval_name": np.repeat(data.tasks, m),
            "performance": data.quality.reshape(-1).astype(np.float64),
            "cost": data.cost.reshape(-1).astype(np.float64),
        }
    )
