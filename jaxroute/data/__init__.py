"""Routing data: the in-memory form, readers, the synthetic benchmark and splits."""

from jaxroute.data._load import FORMATS, READERS, ReaderSpec, load_data
from jaxroute.data._readers import (
    detect_format,
    read_files,
    read_generic,
    to_long_frame,
    to_wide_frame,
    write_generic,
)
from jaxroute.data._splits import (
    SPLITS,
    SplitSpec,
    holdout,
    split_in_domain,
    split_out_of_domain,
    split_predefined,
    split_seeds,
)
from jaxroute.data._synthetic import (
    ROUTERBENCH_MODELS,
    STRONG_MODEL,
    SyntheticConfig,
    synthetic,
    synthetic_from_spec,
)
from jaxroute.data._types import DataError, RoutingData, concat

__all__ = [
    "FORMATS",
    "READERS",
    "ReaderSpec",
    "SPLITS",
    "SplitSpec",
    "DataError",
    "ROUTERBENCH_MODELS",
    "RoutingData",
    "STRONG_MODEL",
    "SyntheticConfig",
    "concat",
    "detect_format",
    "holdout",
    "load_data",
    "read_files",
    "read_generic",
    "split_in_domain",
    "split_out_of_domain",
    "split_predefined",
    "split_seeds",
    "synthetic",
    "synthetic_from_spec",
    "to_long_frame",
    "to_wide_frame",
    "write_generic",
]
