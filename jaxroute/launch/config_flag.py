"""``--config`` (a config file or packaged name) and its ``--config.FIELD=VALUE`` overrides.

jaxroute parses the overrides itself (:mod:`jaxroute.configs._overrides`), not with
ml_collections' config flags, so that one rule holds for every field: the last value
given replaces the whole field (ml_collections appends a repeated tuple flag, refuses
new loss keywords and router entries, and answers a typo with a traceback). The app
runner (:func:`jaxroute.launch.app.run`) takes the overrides out of the expanded command
line before absl parses the rest; ``value`` loads the config, applies them and checks
the result (:func:`jaxroute.train.config_checks.check_config`), raising one
:class:`~jaxroute.configs._overrides.ConfigError` line (exit code 2) for any problem.
"""

from __future__ import annotations

from absl import flags

from jaxroute.configs._load import load_config, packaged_configs
from jaxroute.configs._overrides import ConfigError, apply_overrides, parse_arg
from jaxroute.train.config_checks import check_config


def split_overrides(argv: list[str], name: str = "config"):
    """``(argv without the --NAME.FIELD overrides, [(field, text), ...] in order)``.

    A value may follow as the next argument (``--config.train.epochs 3``) unless it
    starts with ``-`` (then the override is a bare bool flag, ``text`` None).
    """
    rest, overrides, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--":
            rest += argv[i:]
            break
        parsed = parse_arg(argv[i], name)
        if parsed is None:
            rest.append(argv[i])
            i += 1
            continue
        path, text = parsed
        negated = argv[i].lstrip("-").startswith("no")
        if text is None and not negated and i + 1 < len(argv) and argv[i + 1][:1] != "-":
            text, i = argv[i + 1], i + 1
        overrides.append((path, text))
        i += 1
    return rest, overrides


def resolve(spec: str, overrides, *, check: bool = True):
    """The config ``spec`` names with ``overrides`` applied and, with ``check``, checked."""
    config = apply_overrides(load_config(spec), overrides)
    if check:
        check_config(config)
    return config


class ConfigFlag:
    """The ``--NAME`` flag of an app and the ``--NAME.FIELD=VALUE`` overrides given."""

    def __init__(self, name: str, default: str, help_string: str):
        self.name = name
        self.spec = flags.DEFINE_string(name, default, help_string)
        self.overrides: list[tuple[str, str | None]] = []
        self._cache: dict[bool, object] = {}

    def take_overrides(self, argv: list[str]) -> list[str]:
        """``argv`` without this flag's overrides, which are kept (:func:`split_overrides`)."""
        rest, self.overrides = split_overrides(argv, self.name)
        self._cache = {}
        return rest

    def _resolved(self, check: bool):
        if check not in self._cache:
            self._cache[check] = resolve(self.spec.value, self.overrides, check=check)
        return self._cache[check]

    def unchecked(self):
        """The config with the overrides applied, before :func:`check_config` (what
        ``--config_help`` lists)."""
        return self._resolved(check=False)

    @property
    def value(self):
        """The resolved, checked, locked config (ConfigError: one line, exit code 2)."""
        return self._resolved(check=True)


_DEFINED: dict[str, ConfigFlag] = {}


def define_config(name: str = "config", default: str = "base", help_string: str = ""):
    """A ``--NAME`` config flag (file or packaged name, ``:args``) with overrides."""
    if name not in _DEFINED:
        _DEFINED[name] = ConfigFlag(
            name,
            default,
            help_string
            or f"Experiment config: a file or a packaged name ({', '.join(packaged_configs())}), "
            "with ':args' (e.g. base:tiny). Fields: --config_help.",
        )
    return _DEFINED[name]


def take_overrides(argv: list[str]) -> list[str]:
    """``argv`` without the overrides of every defined config flag (kept by each)."""
    for flag in _DEFINED.values():
        argv = flag.take_overrides(argv)
    return argv


__all__ = [
    "ConfigError",
    "ConfigFlag",
    "define_config",
    "resolve",
    "split_overrides",
    "take_overrides",
]
