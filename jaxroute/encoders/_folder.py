"""An encoder folder in Hugging Face format: its files checked and read, and its
content fingerprint.

The folder holds ``config.json`` (a BERT-family config, see
:class:`jaxroute.encoders.BertConfig`), ``model.safetensors``, ``tokenizer.json`` (a
``tokenizers`` tokenizer) and, optionally, sentence-transformers' files:
``sentence_bert_config.json`` (its ``max_seq_length`` caps the tokens per prompt),
``1_Pooling/config.json`` (the pooling) and ``modules.json`` (whether a ``Normalize``
module follows the pooling).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from jaxroute.encoders._config import BertConfig

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
# sentence-transformers' pooling flag (1_Pooling/config.json) -> our pooling name.
POOLING_FLAGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
_NORMALIZE_MODULE = "sentence_transformers.models.Normalize"


def check_folder(folder: str | os.PathLike) -> Path:
    """Returns ``folder`` as a Path after checking it holds :data:`REQUIRED_FILES`.

    Raises:
      FileNotFoundError: the folder, or a file it must hold, does not exist.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"encoder folder {folder} does not exist (or is not a folder)")
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"encoder folder {folder} has no {name}")
    return folder


def read_json(path: Path) -> Any:
    """Reads a JSON object, with an error that names the file."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(d).__name__}")
    return d


def read_config(folder: Path) -> BertConfig:
    """The folder's config.json, checked."""
    path = folder / "config.json"
    return BertConfig.from_dict(read_json(path), source=str(path))


def read_max_length(folder: Path, cfg: BertConfig) -> int:
    """Tokens per prompt: sentence_bert_config.json's max_seq_length, else the positions.

    Positions offset past the padding id (MPNet) leave ``pad_token_id + 1`` rows unused.
    """
    usable = cfg.max_position_embeddings
    if cfg.architecture.position_ids == "after_padding":
        usable -= cfg.pad_token_id + 1
    path = folder / "sentence_bert_config.json"
    n = read_json(path).get("max_seq_length") if path.is_file() else None
    if n is None:
        return usable
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"{path}: max_seq_length must be an integer >= 2, got {n!r}")
    return min(n, usable)


def read_pooling(folder: Path) -> tuple[str, bool]:
    """``(pooling, normalize)`` from sentence-transformers' files; ``("mean", True)``
    where they are absent.

    Raises:
      ValueError: the pooling file sets no flag of :data:`POOLING_FLAGS`, or several
        (names the file and the fields).
    """
    pooling, normalize = "mean", True
    path = folder / "1_Pooling" / "config.json"
    if path.is_file():
        d = read_json(path)
        on = [k for k, v in d.items() if k.startswith("pooling_mode_") and v is True]
        if len(on) != 1 or on[0] not in POOLING_FLAGS:
            raise ValueError(
                f"{path}: fields {on or 'none'} set; supported: exactly one of "
                f"{', '.join(POOLING_FLAGS)}"
            )
        pooling = POOLING_FLAGS[on[0]]
    modules = folder / "modules.json"
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
            normalize = any(m.get("type") == _NORMALIZE_MODULE for m in entries)
        except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError) as e:
            raise ValueError(f"{modules}: not a list of module objects ({e})") from e
    return pooling, normalize


_FINGERPRINTS: dict[tuple, str] = {}


def encoder_fingerprint(folder: str | os.PathLike) -> str:
    """A content hash identifying an encoder folder (weights, config, tokenizer).

    SHA-256 over the bytes of config.json, tokenizer.json, sentence_bert_config.json (if
    present) and model.safetensors; memoised per (path, size, mtime) within a process.
    Features computed with one fingerprint are never served for another. The pooling
    is not hashed here: a pooling other than normalised mean adds a suffix to the cache
    identity (:func:`jaxroute.encoders.encoder_identity`).

    Returns:
      A 16-hex-digit string.
    """
    folder = check_folder(folder)
    files = [folder / n for n in ("config.json", "tokenizer.json", "model.safetensors")]
    if (folder / "sentence_bert_config.json").is_file():
        files.append(folder / "sentence_bert_config.json")
    stats = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stats not in _FINGERPRINTS:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0")
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
            h.update(b"\0")
        _FINGERPRINTS[stats] = h.hexdigest()[:16]
    return _FINGERPRINTS[stats]
