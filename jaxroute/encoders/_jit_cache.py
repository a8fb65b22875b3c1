"""JAX's persistent compilation cache, on by default wherever the encoder is loaded.

The encoder compiles one program per (batch rows, bucket length) shape, seconds each on a
CPU. With the cache, a second process (the next ``route`` or ``embed`` call) reads the
compiled programs from disk instead. Folder: ``$JAXROUTE_JAX_CACHE`` if set (an empty
value turns the cache off), else ``~/.cache/jaxroute/jax_cache``. A cache directory that
the user already configured through ``jax.config`` (or ``JAX_COMPILATION_CACHE_DIR``) wins.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV_VAR = "JAXROUTE_JAX_CACHE"
DEFAULT_JAX_CACHE_DIR = Path("~/.cache/jaxroute/jax_cache")


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache; returns the folder in use (or None).

    Args:
      path: the folder; None for ``$JAXROUTE_JAX_CACHE`` or the default.

    Returns:
      The cache folder, or None when the cache is off (``JAXROUTE_JAX_CACHE=""``).
    """
    current = jax.config.jax_compilation_cache_dir
    if path is None and current:
        return Path(current)
    if path is None:
        env = os.environ.get(ENV_VAR)
        if env is not None and not env.strip():
            return None
        path = env or DEFAULT_JAX_CACHE_DIR
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home: run without the cache rather than fail
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every program that took more than half a second to compile.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
