"""Fitted states of fit/predict routers as inert files in the workdir (no pickle).

A router without gradient training (kNN, ``taskprior``, any ``RouterSpec`` with ``fit``
and ``predict``) is fitted per seed when the run is evaluated; its state is stored so
that ``route``, ``serve`` and ``calibrate`` restore it as they restore a trained
router's checkpoint, without the training data:

    <workdir>/fitted/<router>/seed_<seed>.npz    the state's arrays (np.savez)
    <workdir>/fitted/<router>/seed_<seed>.json   the rest of the state and the record

The state is a tree of mappings (string keys), tuples, lists, arrays (NumPy or JAX) and
JSON scalars (``None``, bool, int, float, str). :func:`flatten` puts every array in a
flat dict keyed by its path (``"params/out/kernel"``) and the rest in a JSON tree where
an array is ``{"__array__": key}`` and a tuple ``{"__tuple__": [...]}``;
:func:`unflatten` inverts it exactly (arrays come back as NumPy arrays, NumPy scalars as
NumPy scalars, floats through ``repr``). The ``.npz`` is read with
``allow_pickle=False``. The ``.json`` is written last, so a state without it was never
completely written. It records what ``fit`` read of the router's config entry (its kind
and fields): a state fitted under other values is refused (``StaleState``).
"""

from __future__ import annotations

import io
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxroute import _io

FORMAT = 1
FOLDER = "fitted"
_ARRAY, _TUPLE, _SCALAR = "__array__", "__tuple__", "scalar"


class StaleState(ValueError):
    """A stored state that does not belong to the run's config (or is unreadable)."""


def _is_array(node: Any) -> bool:
    return isinstance(node, np.ndarray | np.generic) or (
        hasattr(node, "__array__") and hasattr(node, "dtype") and hasattr(node, "shape")
    )


def flatten(tree: Any) -> tuple[dict[str, np.ndarray], Any]:
    """``(arrays, meta)``: the tree's arrays by path and a JSON-able tree of the rest.

    >>> arrays, meta = flatten({"w": np.ones(2, np.float32), "names": ("a", "b"), "t": 0.5})
    >>> sorted(arrays), meta["names"], meta["t"], meta["w"]
    (['w'], {'__tuple__': ['a', 'b']}, 0.5, {'__array__': 'w'})
    """
    arrays: dict[str, np.ndarray] = {}

    def walk(node: Any, path: tuple[str, ...]) -> Any:
        if _is_array(node):
            key = "/".join(path) or "root"
            arrays[key] = np.asarray(node)
            if arrays[key].dtype.hasobject:  # np.savez would pickle it
                raise TypeError(f"state entry {key}: an array of Python objects")
            return {_ARRAY: key, _SCALAR: True} if isinstance(node, np.generic) else {_ARRAY: key}
        if isinstance(node, Mapping):
            out = {}
            for k, v in node.items():
                if not isinstance(k, str) or "/" in k or k in (_ARRAY, _TUPLE):
                    raise TypeError(
                        f"state key {k!r} at {'/'.join(path) or 'the root'}: need a "
                        "string without '/'"
                    )
                out[k] = walk(v, (*path, k))
            return out
        if isinstance(node, tuple | list):
            items = [walk(v, (*path, str(i))) for i, v in enumerate(node)]
            return {_TUPLE: items} if isinstance(node, tuple) else items
        if node is None or isinstance(node, bool | int | float | str):
            return node
        raise TypeError(
            f"state entry {'/'.join(path) or 'the root'}: {type(node).__name__} is neither an "
            "array, a mapping, a tuple/list nor a JSON scalar"
        )

    return arrays, walk(tree, ())


def unflatten(arrays: Mapping[str, np.ndarray], meta: Any) -> Any:
    """The tree :func:`flatten` took apart (``arrays`` read back from the ``.npz``)."""
    if isinstance(meta, dict):
        if _ARRAY in meta:
            a = np.asarray(arrays[meta[_ARRAY]])
            return a[()] if meta.get(_SCALAR) else a
        if _TUPLE in meta:
            return tuple(unflatten(arrays, v) for v in meta[_TUPLE])
        return {k: unflatten(arrays, v) for k, v in meta.items()}
    if isinstance(meta, list):
        return [unflatten(arrays, v) for v in meta]
    return meta


def state_paths(workdir, router: str, seed: int) -> tuple[pathlib.Path, pathlib.Path]:
    """``(<workdir>/fitted/<router>/seed_<seed>.npz, ... .json)``."""
    base = pathlib.Path(workdir) / FOLDER / router / f"seed_{int(seed)}"
    return base.with_suffix(".npz"), base.with_suffix(".json")


def _config_record(rc, spec) -> Any:
    """What ``fit`` reads of the router's config entry (its kind and the spec's fields),
    as JSON reads it back (tuples become lists)."""
    keys = ("model", *spec.fields)
    return json.loads(json.dumps({k: rc[k] for k in keys if k in rc}))


def save_state(workdir, router: str, seed: int, spec, state, rc, **record: Any) -> int:
    """Stores a fitted state (``spec``: its ``RouterSpec``); returns the arrays' bytes.

    ``record``: more JSON fields for the ``.json`` (e.g. ``n_train``).
    """
    arrays, meta = spec.state_to_arrays(state)
    npz, js = state_paths(workdir, router, seed)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _io.atomic_write_bytes(npz, buf.getvalue())
    size = int(sum(a.nbytes for a in arrays.values()))
    _io.atomic_write_json(
        js,
        {
            "format": FORMAT,
            "router": router,
            "model": str(rc["model"]),
            "seed": int(seed),
            "config": _config_record(rc, spec),
            "array_bytes": size,
            "arrays": {k: [list(a.shape), a.dtype.str] for k, a in arrays.items()},
            **record,
            "state": meta,
        },
    )
    return size


def read_record(workdir, router: str, seed: int) -> dict:
    """The ``.json`` of a stored state (FileNotFoundError: none stored)."""
    _, js = state_paths(workdir, router, seed)
    if not js.exists():
        raise FileNotFoundError(f"{js}: no fitted state of router '{router}' for seed {seed}")
    try:
        record = json.loads(js.read_text())
    except json.JSONDecodeError as e:
        raise StaleState(f"{js}: not JSON ({e})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise StaleState(f"{js}: field 'format' is not {FORMAT}")
    return record


def load_state(workdir, router: str, seed: int, spec, rc) -> tuple[Any, dict]:
    """``(state, record)`` of a stored state, checked against the config entry ``rc``.

    Raises:
      FileNotFoundError: nothing stored for this router and seed.
      StaleState: stored under another config entry, or unreadable.
    """
    npz, js = state_paths(workdir, router, seed)
    record = read_record(workdir, router, seed)
    if record.get("config") != _config_record(rc, spec):
        raise StaleState(
            f"{js}: field 'config' does not match router '{router}' in the run's "
            "config.json (the state was fitted under other settings)"
        )
    try:
        with np.load(npz, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise StaleState(f"{npz}: unreadable ({e})") from None
    shapes = {k: [list(a.shape), a.dtype.str] for k, a in arrays.items()}
    if shapes != record.get("arrays"):
        raise StaleState(f"{npz}: its arrays differ from field 'arrays' of {js.name}")
    return spec.state_from_arrays(arrays, record["state"]), record
