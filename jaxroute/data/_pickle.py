"""Reading RouterBench pickles without running the code a pickle may carry.

Unpickling calls whatever callables the file names (``os.system``, ``exec``, ...), so
``pd.read_pickle`` on a file from the internet runs that file's code. RouterBench
ships its tables as pickles, so refusing pickles outright would break the main
dataset; asking for an ``--allow_pickle`` flag would make every user type it and learn
nothing. jaxroute instead reads every ``.pkl`` through :class:`RestrictedUnpickler`: a
pickle may only name the globals that a pandas DataFrame (with numpy, pyarrow-backed
or nullable columns) needs to be rebuilt. Anything else — ``os.system``, ``builtins.eval``,
``subprocess.Popen``, a pandas *function* such as ``pandas.read_csv`` — is refused
before it is looked up, with one line naming the file and the global. No callable
outside the list is ever reached, so nothing outside it can run.

The list holds exact ``module.qualname`` pairs (functions, which could do anything when
called with crafted arguments, are only allowed by name) plus one rule for classes: a
pandas class that is a DataFrame/Series/Index, an extension array or an extension
dtype may be rebuilt, so pickles from newer pandas releases with new array types keep
loading. Pickles written by older pandas versions are renamed to current locations
through pandas' own compatibility table before the check.
"""

from __future__ import annotations

import io
import pathlib
import pickle
import warnings

import pandas as pd

from jaxroute.data._types import DataError


class UnsafePickleError(DataError):
    """A pickle asked for a global outside the DataFrame allow-list."""


def _pairs(module: str, *names: str) -> set[tuple[str, str]]:
    return {(module, n) for n in names}


# Exact globals a DataFrame pickle needs (collected from pickles of DataFrames with
# float/int/bool/object/str/categorical/datetime/timedelta/nullable/string columns,
# Range/Multi/string indexes, protocols 2-5, pandas 1.x-3.x and numpy 1.x/2.x names).
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    _pairs("builtins", "slice", "bytearray", "complex", "frozenset", "set", "range")
    | _pairs("__builtin__", "slice", "bytearray", "complex", "frozenset", "set")
    | _pairs("copyreg", "_reconstructor")
    | _pairs("_codecs", "encode")  # protocol 2 stores bytes as latin-1 text
    | _pairs("collections", "OrderedDict")
    | _pairs("datetime", "datetime", "date", "time", "timedelta", "timezone")
    | _pairs("functools", "partial")  # wraps only callables that passed this check
    | _pairs("numpy", "ndarray", "dtype")
    | _pairs("numpy.core.multiarray", "_reconstruct", "scalar")
    | _pairs("numpy._core.multiarray", "_reconstruct", "scalar")
    | _pairs("numpy.core.numeric", "_frombuffer")
    | _pairs("numpy._core.numeric", "_frombuffer")
    | _pairs("pandas._libs.internals", "_unpickle_block")
    | _pairs("pandas.core.internals.blocks", "new_block")
    | _pairs("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked")
    | _pairs("pandas._libs.tslibs.timestamps", "_unpickle_timestamp")
    | _pairs("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle")
    | _pairs("pandas._libs.tslibs.nattype", "_nat_unpickle", "__nat_unpickle")
    | _pairs("pandas._libs.interval", "Interval", "__pyx_unpickle_IntervalMixin")
    | _pairs("pandas._libs.missing", "NA")
    | _pairs("pandas", "NA", "NaT")
    | _pairs("pandas.core.indexes.base", "_new_Index")
    | _pairs("pandas.core.indexes.datetimes", "_new_DatetimeIndex")
    | _pairs("pandas.core.indexes.period", "_new_PeriodIndex")
    | _pairs("pandas.core.indexes.interval", "_new_IntervalIndex")
    | _pairs("pyarrow.lib", "_restore_array", "py_buffer", "type_for_alias", "chunked_array")
    | _pairs("pyarrow.lib", "field", "schema", "timestamp", "duration", "string", "large_string")
)


def _is_pandas_data_class(obj) -> bool:
    """A pandas container, array, dtype or scalar class (rebuilding one runs no user code)."""
    from pandas.api.extensions import ExtensionArray, ExtensionDtype
    from pandas.core.generic import NDFrame
    from pandas.core.internals import BlockManager, SingleBlockManager

    bases = (NDFrame, pd.Index, ExtensionArray, ExtensionDtype, BlockManager, SingleBlockManager)
    bases += (pd.Interval, pd.Period, pd.Timestamp, pd.Timedelta, pd.offsets.BaseOffset)
    return isinstance(obj, type) and issubclass(obj, bases)


def _rename(module: str, name: str) -> tuple[str, str]:
    """Old pandas locations -> current ones (pandas' own compatibility table)."""
    try:
        from pandas.compat.pickle_compat import _class_locations_map
    except ImportError:  # pragma: no cover - pandas without the table
        return module, name
    return _class_locations_map.get((module, name), (module, name))


def checked_global(path, module: str, name: str, find):
    """``find(module, name)`` if the pair may appear in a DataFrame pickle, else refuse."""
    module, name = _rename(module, name)
    if (module, name) in ALLOWED_GLOBALS:
        return find(module, name)
    # Classes: look up only plain names in pandas' own modules, then check the type.
    if module.split(".")[0] == "pandas" and "." not in name and not name.startswith("_"):
        obj = find(module, name)
        if _is_pandas_data_class(obj):
            return obj
    raise UnsafePickleError(
        f"{path}: refused to unpickle: it names '{module}.{name}', which is not part of a "
        "pandas DataFrame (jaxroute only rebuilds DataFrames from pickles, since a pickle "
        "can run code; if you trust the file, convert it to CSV or parquet)"
    )


class RestrictedUnpickler(pickle.Unpickler):
    """The C unpickler, with every global checked by :func:`checked_global`."""

    def __init__(self, file, path):
        super().__init__(file)
        self._path = path

    def find_class(self, module, name):
        return checked_global(self._path, module, name, super().find_class)


def _compat_unpickler(file, path):
    """pandas' compatibility unpickler (old pickles), with the same check."""
    from pandas.compat.pickle_compat import Unpickler

    class _Restricted(Unpickler):
        def find_class(self, module, name):
            return checked_global(path, module, name, super().find_class)

    return _Restricted(file)


def read_pickle_frame(path: str | pathlib.Path) -> pd.DataFrame:
    """Loads a pickled DataFrame, refusing any pickle that names other globals.

    Raises:
      DataError: the file holds no DataFrame, cannot be read, or names a global that
        is not part of a DataFrame (:class:`UnsafePickleError`); one line naming the file.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.pkl")
    >>> pd.DataFrame({"a": [1.0, 2.0]}).to_pickle(p)
    >>> read_pickle_frame(p)["a"].tolist()
    [1.0, 2.0]
    """
    raw = pathlib.Path(path).read_bytes()
    last = None
    for make in (RestrictedUnpickler, _compat_unpickler):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # moved-module warnings of old pickles
                obj = make(io.BytesIO(raw), path).load()
            break
        except UnsafePickleError:
            raise
        except Exception as e:  # noqa: BLE001 - a broken pickle is a DataError below
            last = e
    else:
        raise DataError(
            f"{path}: cannot be read as a pickled table ({type(last).__name__}: "
            f"{str(last).splitlines()[0] if str(last) else ''})"
        )
    if not isinstance(obj, pd.DataFrame):
        raise DataError(f"{path}: expected a table (DataFrame), got {type(obj).__name__}")
    return obj
