"""Experiment configs by name or path: ``base``, ``base:tiny``, ``path/to/my_config.py:arg``.

A config is a Python file with ``get_config(arg=None) -> ml_collections.ConfigDict``
(``arg``: the text after ``:``). The packaged ones (this folder's files not starting with
``_``) are found by name from any working directory.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pathlib
import sys

import ml_collections

from jaxroute.configs._overrides import ConfigError, did_you_mean

CONFIG_DIR = pathlib.Path(__file__).resolve().parent


def packaged_configs() -> list[str]:
    """Names of the configs shipped in the package (``base``, ``paper``, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))


def resolve_config(spec: str) -> str:
    """``--config`` value -> a config file path (``:args`` kept).

    An existing file wins; otherwise ``base``, ``base.py``, ``configs/base.py`` or
    ``jaxroute/configs/base.py`` name the packaged ``jaxroute/configs/base.py``, from any
    working directory.

    >>> resolve_config("base:tiny").endswith("jaxroute/configs/base.py:tiny")
    True
    """
    path, sep, arg = spec.partition(":")
    if os.path.isfile(path):
        return spec
    stem = pathlib.Path(path).name.removesuffix(".py")
    candidate = CONFIG_DIR / f"{stem}.py"
    if stem and not stem.startswith("_") and candidate.is_file():
        return f"{candidate}{sep}{arg}"
    names = packaged_configs()
    raise ConfigError(
        f"--config={spec}: no file '{path}' and no packaged config '{stem}'"
        f"{did_you_mean(stem, names)} (packaged: {', '.join(names)})"
    )


def _module(path: pathlib.Path):
    """The config module at ``path`` (a packaged one under its package name)."""
    if path.resolve().parent == CONFIG_DIR:
        return importlib.import_module(f"jaxroute.configs.{path.stem}")
    name = f"jaxroute_user_config_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_config(spec: str) -> ml_collections.ConfigDict:
    """The config ``spec`` names (:func:`resolve_config`), unlocked.

    An unknown ``get_config`` arg, like any ValueError of the config file, is one
    :class:`ConfigError` line naming the config.
    """
    path, sep, arg = resolve_config(spec).partition(":")
    module = _module(pathlib.Path(path))
    get_config = getattr(module, "get_config", None)
    if get_config is None:
        raise ConfigError(f"--config={spec}: {path} has no get_config()")
    try:
        config = get_config(arg) if sep else get_config()
    except ValueError as e:
        raise ConfigError(f"--config={spec}: {str(e).splitlines()[0]}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"--config={spec}: get_config() returned {type(config).__name__}")
    return config
