"""One writer per workdir, and a workdir never mixes two datasets (docs/design.md).

**The lock.** A run holds ``fcntl.flock(LOCK_EX)`` on ``workdir/.lock`` for its whole
life and writes its pid into the file. A second run on the same workdir fails at once
with :class:`WorkdirBusy` naming that pid. The kernel drops a flock when its process
dies (``kill -9`` included), so a lock left by a killed run is simply free again: the
next run takes it over and logs the dead pid it replaces. No pid-file guessing, no
timeouts. Limits: flock is advisory and per host (two machines sharing an NFS workdir
are not protected), and there is no Windows support (``fcntl``).

Readers (``evaluate`` with ``--output_dir`` elsewhere, ``route``) only *probe*: a
shared non-blocking flock on an existing ``.lock`` (opened read-only, never created),
released at once; if a writer holds it they refuse with one line. They write nothing.

**The fingerprint.** ``workdir/fingerprint.json`` records a SHA-256 of the quality,
cost and feature arrays (float32 bytes; per model for quality and cost, so a message
can name the model), the task labels (``eval_name``), the model names and the sample
ids, every one with the rows sorted by sample id, so it does not depend on the row
order; ``row_order`` hashes the ids in the order as loaded, and ``row_order.json``
keeps that order. It is written on the first run and compared on every resume and
every evaluation: different data fails with :class:`DataMismatch` naming what changed;
the same rows in another order are put back in the first run's order (the seeded
splits follow the row order, so this keeps the test prompts those of the first run).
Workdirs from before version 2 are compared with the old hashes. Hashing 36k x 11
float32 matrices and 36k x 384 features is one pass over ~57 MB (about 0.1 s).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import inspect
import json
import os
import pathlib
import threading
from collections.abc import Iterator

import jax
import numpy as np
from absl import logging

from jaxroute._io import atomic_write_json

LOCK_NAME = ".lock"
FINGERPRINT_NAME = "fingerprint.json"


class WorkdirError(ValueError):
    """The workdir cannot be used for this run (bad input: exit code 2)."""


class WorkdirBusy(WorkdirError):
    """Another process holds the workdir's lock."""


class DataMismatch(WorkdirError):
    """The data differs from the data the workdir was trained on."""


# Locks this process holds: workdir -> [fd, depth]. flock locks belong to an open file
# description, so a nested acquire in the same process must reuse the fd, not reopen.
_held: dict[str, list[int]] = {}
_held_mutex = threading.Lock()


def _pid_in(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
    except OSError:
        return "unknown"


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _jax_process_index() -> int:
    """This process's index in a multi-process JAX run (0 otherwise)."""
    return jax.process_index()


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Holds ``workdir/.lock`` exclusively for the ``with`` block (creates the workdir).

    Re-entrant within one process. If this call created the workdir and the block
    fails while the folder holds nothing but the lock, the folder is removed again, so
    a run that fails on its input leaves nothing behind.

    Raises:
      WorkdirBusy: another live process holds the lock (the message names its pid).
    """
    path = pathlib.Path(workdir).expanduser().absolute()
    key = str(path)
    with _held_mutex:
        if key in _held:
            _held[key][1] += 1
            nested = True
        elif _jax_process_index() != 0:  # a multi-process run: process 0 locks for all
            path.mkdir(parents=True, exist_ok=True)
            _held[key] = [None, 1]
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield path
        finally:
            with _held_mutex:
                _held[key][1] -= 1
                if _held[key][0] is None and not _held[key][1]:
                    del _held[key]
        return
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _pid_in(fd)
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise WorkdirBusy(
                f"{path} is in use by another run (pid {holder}, see {path / LOCK_NAME}); "
                "wait for it to finish or use another --workdir"
            ) from None
        raise
    previous = _pid_in(fd)
    if previous not in ("unknown", str(os.getpid())) and not _alive(previous):
        logging.warning("%s: taking over the lock of pid %s (no longer running)", path, previous)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    with _held_mutex:
        _held[key] = [fd, 1]
    ok = False
    try:
        yield path
        ok = True
    finally:
        with _held_mutex:
            del _held[key]
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        if not ok and created and [p.name for p in path.iterdir()] == [LOCK_NAME]:
            (path / LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.rmdir()


def holds_workdir_lock(fn):
    """Decorator: ``fn(..., workdir, ...)`` runs inside :func:`workdir_lock` (the
    argument named ``workdir``), so a run is locked with one line at its entry point."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        workdir = sig.bind(*args, **kwargs).arguments["workdir"]
        with workdir_lock(workdir):
            return fn(*args, **kwargs)

    return wrapper


def ensure_not_training(workdir: str | os.PathLike) -> None:
    """Refuses a workdir whose lock another process holds (readers: writes nothing).

    Raises:
      WorkdirBusy: one line naming the pid of the run that holds the workdir.
    """
    path = pathlib.Path(workdir).expanduser().absolute()
    if str(path) in _held:  # this process is the writer (e.g. train, then evaluate)
        return
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDONLY)
    except OSError:  # no lock file: no run has held this workdir since locks exist
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkdirBusy(
                    f"{path} is still being written by pid {_pid_in(fd)} (training?); "
                    "wait for that run to finish"
                ) from None
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- fingerprint
FINGERPRINT_VERSION = 2
ROW_ORDER_NAME = "row_order.json"


def _digest(a) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:32]


def _digest_strings(items) -> str:
    h = hashlib.sha256()
    for s in items:
        h.update(str(s).encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:32]


def _canonical_order(data) -> np.ndarray:
    """Rows sorted by sample id (ids are unique): the order the content is hashed in."""
    return np.argsort(np.asarray(data.sample_ids).astype(str), kind="stable")


def data_fingerprint(data) -> dict:
    """Content hashes of a RoutingData (see the module docstring).

    Rows are hashed sorted by sample id, so the same rows in another order give the
    same content hashes; ``row_order`` hashes the ids in the order as loaded.

    >>> from jaxroute.data import synthetic
    >>> d = synthetic(n_prompts=20, seed=0)
    >>> data_fingerprint(d) == data_fingerprint(synthetic(n_prompts=20, seed=0))
    True
    """
    order = _canonical_order(data)
    q = np.asarray(data.quality, np.float32)[order]
    c = np.asarray(data.cost, np.float32)[order]
    feats = None if data.features is None else np.asarray(data.features, np.float32)[order]
    ids = np.asarray(data.sample_ids).astype(str)
    return {
        "version": FINGERPRINT_VERSION,
        "n_prompts": int(q.shape[0]),
        "models": list(data.models),
        "sample_ids": _digest_strings(ids[order]),
        "row_order": _digest_strings(ids),
        "tasks": _digest_strings(np.asarray(data.tasks).astype(str)[order]),
        "quality": {m: _digest(q[:, j]) for j, m in enumerate(data.models)},
        "cost": {m: _digest(c[:, j]) for j, m in enumerate(data.models)},
        "features": None if feats is None else _digest(feats),
        "feature_dim": None if feats is None else int(feats.shape[1]),
    }


def _legacy_fingerprint(data) -> dict:
    """The fingerprint of workdirs written before version 2 (rows as loaded, no tasks)."""
    q = np.asarray(data.quality, np.float32)
    c = np.asarray(data.cost, np.float32)
    feats = None if data.features is None else np.asarray(data.features, np.float32)
    return {
        "n_prompts": int(q.shape[0]),
        "models": list(data.models),
        "sample_ids": _digest_strings(data.sample_ids),
        "quality": {m: _digest(q[:, j]) for j, m in enumerate(data.models)},
        "cost": {m: _digest(c[:, j]) for j, m in enumerate(data.models)},
        "features": None if feats is None else _digest(feats),
        "feature_dim": None if feats is None else int(feats.shape[1]),
    }


def fingerprint_changes(old: dict, new: dict) -> list[str]:
    """What differs between two fingerprints' content, in words (empty when they agree;
    the row order is not content: :func:`check_fingerprint` handles it)."""
    out = []
    if old.get("models") != new.get("models"):
        out.append(f"models {old.get('models')} -> {new.get('models')}")
    if old.get("n_prompts") != new.get("n_prompts"):
        out.append(f"prompts {old.get('n_prompts')} -> {new.get('n_prompts')}")
    elif old.get("sample_ids") != new.get("sample_ids"):
        if "version" in old:  # rows are matched by id: other ids, nothing to compare
            return out + ["sample ids"]
        out.append("sample ids (or their order)")
    if "tasks" in old and old.get("tasks") != new.get("tasks"):
        out.append("task labels (eval_name)")
    for field in ("quality", "cost"):
        a, b = old.get(field) or {}, new.get(field) or {}
        changed = [m for m in new.get("models", []) if m in a and a[m] != b.get(m)]
        if changed:
            out.append(f"{field} of {changed}")
    if old.get("feature_dim") != new.get("feature_dim"):
        out.append(f"feature dimension {old.get('feature_dim')} -> {new.get('feature_dim')}")
    elif old.get("features") != new.get("features"):
        out.append("features")
    return out


def _mismatch(workdir, path, changes) -> DataMismatch:
    return DataMismatch(
        f"{workdir} was trained on different data ({'; '.join(changes)} changed since "
        f"{path.name} was written); resuming would mix the two. Use a new --workdir "
        "or delete this one."
    )


def _recorded_order(workdir: pathlib.Path, data):
    """``data`` in the row order of the first run (same rows, same content), or a
    DataMismatch when that order was not kept."""
    path = workdir / ROW_ORDER_NAME
    try:
        ids = json.loads(path.read_text())
    except (OSError, ValueError):
        raise DataMismatch(
            f"{workdir}: the rows are the same but in another order than when "
            f"{FINGERPRINT_NAME} was written, and {ROW_ORDER_NAME} (the first run's order) "
            "is missing or unreadable; restore the first order or use a new --workdir"
        ) from None
    where = {str(k): i for i, k in enumerate(ids)}
    current = np.asarray(data.sample_ids).astype(str)
    if len(where) != len(current) or any(k not in where for k in current):
        raise DataMismatch(f"{path}: does not list this data's sample ids; delete the workdir")
    perm = np.argsort(np.asarray([where[k] for k in current]), kind="stable")
    return data.subset(perm)


def check_fingerprint(
    workdir: str | os.PathLike, data, *, record: bool = False, reorder: bool = False
):
    """Compares ``data`` with ``workdir/fingerprint.json``; ``record`` writes it if absent.

    The content (models, sample ids, task labels, quality, cost, features) must agree;
    the row order need not. Rows in another order are put back in the first run's order
    (``row_order.json``) when ``reorder`` is set, so the seeded splits, and so every
    number, are those of the first run; without ``reorder`` (a caller that would split
    the data as given) they are refused with one line.

    Returns:
      ``data``, in the first run's row order.

    Raises:
      DataMismatch: one line naming what changed (models, prompts, task labels,
        quality or cost of which models, features, or the row order).
    """
    workdir = pathlib.Path(workdir)
    path = workdir / FINGERPRINT_NAME
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DataMismatch(f"{path}: unreadable ({e}); delete it to accept the data") from None
        new = data_fingerprint(data) if "version" in old else _legacy_fingerprint(data)
        changes = fingerprint_changes(old, new)
        if changes:
            raise _mismatch(workdir, path, changes)
        if "version" in old and old.get("row_order") != new["row_order"]:
            if not reorder:
                raise DataMismatch(
                    f"{workdir}: the rows are the same but in another order than when "
                    f"{path.name} was written, and the seeded splits follow the row order; "
                    "restore the first order or use a new --workdir"
                )
            logging.warning("%s: rows in another order; using the first run's order", workdir)
            data = _recorded_order(workdir, data)
        return data
    if record:
        if (path.parent / "checkpoints").exists():
            logging.warning(
                "%s: no %s (a workdir from before fingerprints); recording the current "
                "data's, which cannot be checked against what its checkpoints saw",
                workdir,
                FINGERPRINT_NAME,
            )
        ids = np.asarray(data.sample_ids).astype(str).tolist()
        atomic_write_json(workdir / ROW_ORDER_NAME, ids, indent=None)
        atomic_write_json(path, data_fingerprint(data))
    return data
