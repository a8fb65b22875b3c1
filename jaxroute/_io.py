"""Atomic file writes: every file jaxroute writes goes through one of these.

Each writes a temporary file in the target's folder, flushes and fsyncs it, then
``os.replace``-s it over the target, so a crash or a full disk leaves the previous
version (or nothing) and never a truncated file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(
    path: str | os.PathLike, write_fn: Callable[[IO[bytes]], Any], mode: int = 0o644
) -> None:
    """Calls ``write_fn(f)`` on a binary temporary file, then renames it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600
        os.replace(tmp, path)
    except OSError as e:  # disk full, permissions: the one-line error names the file
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savefig(path: str | os.PathLike, fig: Any, **savefig_kwargs: Any) -> None:
    """Saves a matplotlib figure to ``path`` atomically (format from the suffix)."""
    savefig_kwargs.setdefault("format", Path(path).suffix.lstrip(".") or "png")
    atomic_write(path, lambda f: fig.savefig(f, **savefig_kwargs))


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> None:
    """Serialises ``obj`` first (a failure writes nothing), then writes it atomically."""
    dumps_kwargs.setdefault("indent", 2)
    atomic_write_text(path, json.dumps(obj, **dumps_kwargs) + "\n")
