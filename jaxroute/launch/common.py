"""The names the apps share, in one import (``from jaxroute.launch import common``).

Each lives in a module of its own: :mod:`~jaxroute.launch.app` (the runner: help, flag
parsing, exit codes, quieting libraries), :mod:`~jaxroute.launch.data_flags` (the data
and workdir flags), :mod:`~jaxroute.launch.config_flag` (``--config`` and its
overrides), :mod:`~jaxroute.launch.config_help` (``--config_help``),
:mod:`~jaxroute.launch.packaged` (``--flagfile``), :mod:`~jaxroute.launch.output` (what
the apps print) and :mod:`~jaxroute.launch.policy_flags` (route, serve, calibrate).
"""

from jaxroute.configs._load import CONFIG_DIR, packaged_configs, resolve_config
from jaxroute.launch.app import (
    _QUIET,
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_FAILURE,
    exit_code,
    quiet_libraries,
    run,
    start,
)
from jaxroute.launch.config_flag import define_config
from jaxroute.launch.config_help import FIELD_DOCS, config_fields, config_help
from jaxroute.launch.data_flags import (
    COORDINATOR,
    DATA_FORMAT,
    DATA_PATH,
    DROP_INCOMPLETE,
    NUM_PROCESSES,
    PROCESS_ID,
    WORKDIR,
    apply_data_flags,
    load_data_or_exit,
)
from jaxroute.launch.output import (
    define_json,
    json_safe,
    print_json,
    print_paths,
    progress,
    table,
)
from jaxroute.launch.packaged import (
    FLAGS_DIR,
    expand_flagfiles,
    packaged_flagfiles,
    resolve_flagfile,
)

__all__ = [
    "CONFIG_DIR",
    "COORDINATOR",
    "DATA_FORMAT",
    "DATA_PATH",
    "DROP_INCOMPLETE",
    "EXIT_BAD_INPUT",
    "EXIT_CODES",
    "EXIT_FAILURE",
    "FIELD_DOCS",
    "FLAGS_DIR",
    "NUM_PROCESSES",
    "PROCESS_ID",
    "WORKDIR",
    "_QUIET",
    "apply_data_flags",
    "config_fields",
    "config_help",
    "define_config",
    "define_json",
    "exit_code",
    "expand_flagfiles",
    "json_safe",
    "load_data_or_exit",
    "packaged_configs",
    "packaged_flagfiles",
    "print_json",
    "print_paths",
    "progress",
    "quiet_libraries",
    "resolve_config",
    "resolve_flagfile",
    "run",
    "start",
    "table",
]
