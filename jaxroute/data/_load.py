"""``load_data``: the reader table and the one dispatcher over it.

``READERS`` maps a format name to a :class:`ReaderSpec`. A reader with a ``prefix``
claims paths spelt ``PREFIX`` or ``PREFIX:ARGS`` (``synthetic:n_prompts=2000``,
``tfds:routerbench/5shot@DIR``); the file forms (``wide``, ``long``, ``generic``) are
detected from the path under ``auto``. Adding a reader is one line here; a reader whose
module is heavy to import (TFDS) is named as ``"package.module:function"`` and imported
on first use, so this module imports none of them and none of them imports this one.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from collections.abc import Callable
from typing import Any

from absl import logging

from jaxroute.data._readers import read_files
from jaxroute.data._types import DataError, RoutingData, suspicious


@dataclasses.dataclass(frozen=True)
class ReaderSpec:
    """One data format.

    Attributes:
      read: ``read(path: str, *, drop_incomplete: bool) -> RoutingData`` (or its
        ``"package.module:function"``).
      prefix: paths ``PREFIX`` / ``PREFIX:ARGS`` select this reader under ``auto``
        (None: a file form, detected from the file).
      description: one line for listings and errors.
    """

    read: Any
    prefix: str | None = None
    description: str = ""

    def __call__(self, path: str, *, drop_incomplete: bool = False) -> RoutingData:
        read = self.read
        if isinstance(read, str):
            module, _, attr = read.partition(":")
            read = getattr(importlib.import_module(module), attr)
        return read(path, drop_incomplete=drop_incomplete)


def _file_form(fmt: str) -> Callable[..., RoutingData]:
    return functools.partial(read_files, data_format=fmt)


READERS: dict[str, ReaderSpec] = {
    "wide": ReaderSpec(_file_form("wide"), description="RouterBench wide: pickle/csv/parquet"),
    "long": ReaderSpec(_file_form("long"), description="RouterBench long (one row per model)"),
    "generic": ReaderSpec(_file_form("generic"), description="quality.npy + cost.npy folder"),
    "synthetic": ReaderSpec(
        "jaxroute.data._synthetic:read_synthetic", "synthetic", "built-in synthetic benchmark"
    ),
    "tfds": ReaderSpec(
        "jaxroute.data.tfds_routerbench:read_tfds", "tfds", "a prepared TFDS dataset"
    ),
}
FORMATS = ("auto", *READERS)


def load_data(
    path: str | os.PathLike,
    data_format: str | None = None,
    *,
    drop_incomplete: bool = False,
    models: list[str] | None = None,
) -> RoutingData:
    """Loads routing data from ``path`` with the reader of ``READERS`` it names.

    Args:
      path: a file or folder. ``synthetic`` or ``synthetic:n_prompts=2000,seed=1`` gives
        the built-in synthetic benchmark; ``tfds:NAME/CONFIG[@DATA_DIR]`` reads a
        prepared TFDS dataset.
      data_format: ``auto`` (default: a reader's prefix, else detected from the files) or
        a key of ``READERS``: ``wide`` (RouterBench pickle/csv/parquet, one file or a
        folder), ``long`` (RouterBench raw form), ``generic`` (``quality.npy`` +
        ``cost.npy`` + ``models.txt`` folder or ``.npz``), ``synthetic``, ``tfds``.
      drop_incomplete: drop samples with a model missing after merging (the count is
        logged) instead of failing.
      models: expected model names (default: every model found); a missing one fails.

    Returns:
      The validated :class:`RoutingData`.
    """
    fmt = (data_format or "auto").lower()
    if fmt not in FORMATS:
        raise DataError(f"unknown data format '{data_format}'; choose one of {FORMATS}")
    spath = str(path)
    if fmt == "auto":
        head = spath.split(":", 1)[0]
        fmt = next((n for n, r in READERS.items() if r.prefix and r.prefix == head), "auto")
    reader = READERS[fmt] if fmt != "auto" else functools.partial(read_files, data_format="auto")
    data = reader(spath, drop_incomplete=drop_incomplete)
    if models is not None:
        missing = [m for m in models if m not in data.models]
        if missing:
            raise DataError(f"{spath}: column(s) {missing} missing; found {list(data.models)}")
        data = data.select_models(models)
    for line in suspicious(data):  # warnings, not errors (see RoutingData docs)
        logging.warning("%s", line)
    return data
