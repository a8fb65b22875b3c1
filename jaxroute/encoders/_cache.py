"""The on-disk feature cache, precomputed feature files, and ``features_for``.

Cache layout (one folder per encoder identity, per-prompt keys)::

    cache_dir/<fingerprint>[-<pooling>][-raw][-bf16]-L<max_length>/
        manifest.json        {"fingerprint", "max_length", "dim", "entries": {key: [shard, row]}}
        shard-<hash>.npy     float32 [n, D], the vectors one run computed

``key = sha256(fingerprint, max_length, prompt)``, so a changed prompt or a changed
encoder (weights, config or tokenizer bytes, see :func:`encoder_fingerprint`: another
name of the encoder table is another folder, hence another fingerprint), a pooling
other than the normalised mean (``-cls``, ``-raw``, see :func:`encoder_identity`), a
changed ``max_length`` or a changed matmul mode (the ``-bf16`` suffix of the
fingerprint, see :func:`jaxroute.encoders.resolve_dtype`) never matches a stored vector.
Shards are written first, the manifest last, each through a temporary file and
``os.replace``: an interrupted run leaves at most an unreferenced shard, never a
manifest entry without its vectors. A missing or unreadable shard or manifest counts as
a miss and is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from jaxroute import _io
from jaxroute.encoders import _embed, _folder, _table

DEFAULT_CACHE_DIR = "~/.cache/jaxroute/features"


def encoder_identity(encoder_dir: str | os.PathLike | None = None) -> tuple[str, int]:
    """``(identity, max_length)`` of an encoder (a name of the encoder table or a
    folder), without loading its weights.

    The identity is the folder's content fingerprint (:func:`encoder_fingerprint`),
    plus ``-<pooling>`` when the pooling is not the mean and ``-raw`` when the vectors
    are not normalised: two names for the same weights and pooling share vectors, any
    other difference does not.
    """
    found = _table.resolve(encoder_dir)
    suffix = "" if found.pooling == "mean" else f"-{found.pooling}"
    suffix += "" if found.normalize else "-raw"
    return _folder.encoder_fingerprint(found.folder) + suffix, found.max_length


class FeatureCache:
    """Per-prompt cache of sentence vectors for one encoder identity.

    Args:
      cache_dir: root folder of the cache.
      fingerprint: :func:`encoder_fingerprint` of the encoder.
      max_length: the encoder's tokens per prompt.
      dtype: the encoder's resolved matmul mode (``"float32"`` or ``"bfloat16"``);
        bfloat16 vectors live under their own identity, ``<fingerprint>-bf16``.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        fingerprint: str,
        max_length: int,
        dtype: str = "float32",
    ):
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"FeatureCache dtype must be float32 or bfloat16, got {dtype!r}")
        self.dtype = dtype
        # The suffix names the bfloat16 computation (bfloat16 products, tanh GELU,
        # jaxroute/encoders/_layers.py): a change to it must change the suffix, or
        # vectors of the old computation would be served for the new one.
        fingerprint = fingerprint + ("-bf16" if dtype == "bfloat16" else "")
        self.fingerprint = fingerprint
        self.max_length = max_length
        self.folder = Path(cache_dir).expanduser() / f"{fingerprint}-L{max_length}"
        self.manifest_path = self.folder / "manifest.json"

    def key(self, prompt: str) -> str:
        """The cache key of one prompt (hex SHA-256, 32 digits)."""
        h = hashlib.sha256(f"{self.fingerprint}\0{self.max_length}\0".encode())
        h.update(prompt.encode("utf-8", "surrogatepass"))
        return h.hexdigest()[:32]

    def _manifest(self) -> dict[str, Any]:
        try:
            m = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"entries": {}}
        except (OSError, ValueError) as e:
            logging.warning("feature cache %s unreadable (%s); recomputing", self.manifest_path, e)
            return {"entries": {}}
        if (
            not isinstance(m, dict)
            or m.get("fingerprint") != self.fingerprint
            or m.get("max_length") != self.max_length
            or not isinstance(m.get("entries"), dict)
        ):
            logging.warning("feature cache %s does not match; ignoring it", self.manifest_path)
            return {"entries": {}}
        return m

    def get(self, prompts: Sequence[str]) -> tuple[np.ndarray | None, list[int]]:
        """Looks prompts up.

        Returns:
          ``(vectors, missing)``: float32 ``[N, D]`` with the cached rows filled (None
          when nothing is cached), and the indices of the prompts not found.
        """
        m = self._manifest()
        entries, dim = m["entries"], m.get("dim")
        shards: dict[str, np.ndarray | None] = {}
        out = None
        missing = []
        for i, p in enumerate(prompts):
            hit = entries.get(self.key(p))
            vec = None
            if isinstance(hit, list) and len(hit) == 2:
                name, row = hit
                if name not in shards:
                    shards[name] = self._load_shard(name, dim)
                arr = shards[name]
                if arr is not None and isinstance(row, int) and 0 <= row < arr.shape[0]:
                    vec = arr[row]
            if vec is None:
                missing.append(i)
                continue
            if out is None:
                out = np.zeros((len(prompts), dim), np.float32)
            out[i] = vec
        return out, missing

    def _load_shard(self, name: str, dim: Any) -> np.ndarray | None:
        path = self.folder / str(name)
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            logging.warning("feature cache shard %s unreadable (%s); recomputing", path, e)
            return None
        if arr.ndim != 2 or arr.shape[1] != dim or arr.dtype != np.float32:
            logging.warning("feature cache shard %s has shape %s; recomputing", path, arr.shape)
            return None
        return arr

    def put(self, prompts: Sequence[str], vectors: np.ndarray) -> None:
        """Stores vectors (float32 ``[n, D]``) for prompts: one new shard + the manifest."""
        vectors = np.ascontiguousarray(vectors, np.float32)
        if len(prompts) == 0:
            return
        keys = [self.key(p) for p in prompts]
        name = "shard-" + hashlib.sha256("".join(keys).encode()).hexdigest()[:16] + ".npy"
        _io.atomic_write(self.folder / name, lambda f: np.save(f, vectors, allow_pickle=False))
        m = self._manifest()  # re-read just before writing: keep what others added
        if m.get("dim") not in (None, vectors.shape[1]):
            m = {"entries": {}}
        m.update(fingerprint=self.fingerprint, max_length=self.max_length, dim=vectors.shape[1])
        m["entries"].update({k: [name, r] for r, k in enumerate(keys)})
        data = json.dumps(m, separators=(",", ":")).encode()
        _io.atomic_write(self.manifest_path, lambda f: f.write(data))


def _get_encoder(encoder_dir: str | os.PathLike | None, dtype: str = "auto") -> _embed.Encoder:
    return _embed.cached_encoder(encoder_dir, dtype)


def embed_prompts(
    prompts: Sequence[str],
    *,
    encoder_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR,
    batch_size: int = _embed.DEFAULT_BATCH_SIZE,
    sample_ids: Sequence[Any] | None = None,
    progress: bool = True,
    dtype: str = "auto",
) -> np.ndarray:
    """Embeds prompts through the feature cache: cached rows from disk, the rest encoded.

    Args:
      prompts: N non-blank strings (duplicates are encoded once).
      encoder_dir: a name of the encoder table, an encoder folder, or None for the
        installed all-MiniLM-L6-v2.
      cache_dir: cache root; None disables the cache.
      batch_size: rows per forward call.
      sample_ids: optional ids, used to name a bad prompt in errors.
      progress: show a tqdm bar while encoding.
      dtype: the encoder's matmul mode (``"auto"``, ``"float32"``, ``"bfloat16"``; see
        :func:`jaxroute.encoders.resolve_dtype`).

    Returns:
      float32 ``[N, D]``, in input order.
    """
    prompts = _embed.check_prompts(prompts, sample_ids)
    dtype = _table.encoder_dtype(encoder_dir, dtype)
    if cache_dir is None:
        return _embed.encode(
            prompts, _get_encoder(encoder_dir, dtype), batch_size=batch_size, progress=progress
        )
    fingerprint, max_length = encoder_identity(encoder_dir)
    cache = FeatureCache(cache_dir, fingerprint, max_length, dtype)
    unique = list(dict.fromkeys(prompts))
    found, missing = cache.get(unique)
    logging.info(
        "feature cache %s: %d of %d unique prompts cached, %d to encode",
        cache.folder,
        len(unique) - len(missing),
        len(unique),
        len(missing),
    )
    if missing:
        encoder = _get_encoder(encoder_dir, dtype)
        todo = [unique[i] for i in missing]
        vecs = encoder(todo, batch_size=batch_size, progress=progress)
        cache.put(todo, vecs)
        if found is None:
            found = np.zeros((len(unique), vecs.shape[1]), np.float32)
        found[missing] = vecs
    if found is None:  # no prompts at all
        return np.zeros((0, _get_encoder(encoder_dir, dtype).dim), np.float32)
    row = {p: i for i, p in enumerate(unique)}
    return found[[row[p] for p in prompts]]


def ids_path(features_path: str | os.PathLike) -> Path:
    """The ``.ids`` file beside a ``.npy`` features file (``x.npy`` -> ``x.ids``)."""
    return Path(features_path).with_suffix(".ids")


def write_features(
    path: str | os.PathLike, features: np.ndarray, sample_ids: Sequence[Any] | None = None
) -> None:
    """Writes float32 ``[N, D]`` features to ``path`` (.npy) and ids to ``path``'s .ids.

    Both files are written atomically (temporary file + rename).
    """
    path = Path(path)
    features = np.ascontiguousarray(features, np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {features.shape}")
    if sample_ids is not None:
        ids = [str(s) for s in sample_ids]
        if len(ids) != features.shape[0]:
            raise ValueError(f"{len(ids)} sample ids for {features.shape[0]} feature rows")
        bad = [s for s in ids if "\n" in s or "\r" in s]
        if bad:
            raise ValueError(f"sample id {bad[0]!r} contains a newline; cannot write {path}")
        text = "".join(s + "\n" for s in ids).encode("utf-8")
        _io.atomic_write(ids_path(path), lambda f: f.write(text))
    _io.atomic_write(path, lambda f: np.save(f, features, allow_pickle=False))


def load_features(
    path: str | os.PathLike,
    sample_ids: Sequence[Any] | None = None,
    n_rows: int | None = None,
) -> np.ndarray:
    """Loads precomputed features (any width D, e.g. CLIP image+text) from a .npy file.

    If a ``.ids`` file (one sample id per line) sits beside it and ``sample_ids`` are
    given, the rows are matched to ``sample_ids`` by id (and reordered to their order).

    Args:
      path: a ``.npy`` file holding a 2-D float array ``[N, D]``.
      sample_ids: the data's sample ids, to check (and order) the rows against.
      n_rows: the data's row count, to check against.

    Returns:
      float32 ``[N, D]``, in the order of ``sample_ids`` when given.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: wrong shape, non-finite values, row count or ids that do not match
        the data (the message names the file).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"features file {path} does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from e
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric [N, D] array, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise ValueError(f"{path}: {bad.size} row(s) have non-finite values (first: row {bad[0]})")
    if sample_ids is not None and n_rows is not None and len(sample_ids) != n_rows:
        raise ValueError(f"{len(sample_ids)} sample ids but n_rows={n_rows}")
    expected = n_rows if n_rows is not None else (None if sample_ids is None else len(sample_ids))
    if expected is not None and arr.shape[0] != expected:
        raise ValueError(f"{path}: has {arr.shape[0]} rows, the data has {expected}")
    ipath = ids_path(path)
    if sample_ids is not None and not ipath.is_file():
        logging.warning(
            "%s: no %s beside it, so its rows cannot be checked against the data's sample "
            "ids; they are used in file order",
            path,
            ipath.name,
        )
    if sample_ids is None or not ipath.is_file():
        return arr
    file_ids = ipath.read_text(encoding="utf-8").splitlines()
    if len(file_ids) != arr.shape[0]:
        raise ValueError(f"{ipath}: {len(file_ids)} ids for {arr.shape[0]} rows in {path}")
    pos = {s: i for i, s in enumerate(file_ids)}
    if len(pos) != len(file_ids):
        dup = next(s for i, s in enumerate(file_ids) if pos[s] != i)
        raise ValueError(f"{ipath}: duplicate sample id {dup!r}")
    want = [str(s) for s in sample_ids]
    absent = [s for s in want if s not in pos]
    if absent:
        raise ValueError(
            f"{ipath}: {len(absent)} sample id(s) of the data are not in the file, "
            f"e.g. {absent[:5]}"
        )
    return arr[[pos[s] for s in want]]


def features_for(
    data: Any,
    *,
    encoder_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR,
    features_path: str | os.PathLike | None = None,
    batch_size: int = _embed.DEFAULT_BATCH_SIZE,
    progress: bool = True,
    encoder_dtype: str = "auto",
) -> np.ndarray:
    """Features for a :class:`jaxroute.data.RoutingData`: from a file, or its prompts.

    Args:
      data: anything with ``sample_ids`` and ``prompts`` (``prompts`` may be None when
        ``features_path`` is given).
      encoder_dir: a name of the encoder table, an encoder folder, or None for the
        installed all-MiniLM-L6-v2.
      cache_dir: feature cache root; None disables the cache.
      features_path: a precomputed ``.npy`` (see :func:`load_features`); used instead
        of the encoder when given.
      batch_size: rows per forward call.
      progress: show a tqdm bar while encoding.
      encoder_dtype: the encoder's matmul mode (see :func:`embed_prompts`).

    Returns:
      float32 ``[N, D]`` aligned with ``data.sample_ids``.
    """
    sample_ids = list(data.sample_ids)
    if features_path is not None:
        return load_features(features_path, sample_ids=sample_ids, n_rows=len(sample_ids))
    prompts = getattr(data, "prompts", None)
    if prompts is None:
        raise ValueError(
            "the data has no prompts to encode: pass features_path= (precomputed .npy) "
            "or load the data with its prompt column"
        )
    prompts = list(prompts)
    if len(prompts) != len(sample_ids):
        raise ValueError(f"{len(prompts)} prompts for {len(sample_ids)} sample ids")
    return embed_prompts(
        prompts,
        encoder_dir=encoder_dir,
        cache_dir=cache_dir,
        batch_size=batch_size,
        sample_ids=sample_ids,
        progress=progress,
        dtype=encoder_dtype,
    )
