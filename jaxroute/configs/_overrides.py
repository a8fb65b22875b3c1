"""``FIELD=VALUE`` overrides of an experiment config (``train --config.FIELD=VALUE``).

The rules (``train --config_help`` prints them):

- An override replaces the field's whole value, and of several overrides of one field
  the last wins, whatever the field holds: a tuple (``seeds``, ``blend_weights``), a list,
  a dict (``hparams``, ``loss_kwargs``) or a number. A flag after a ``--flagfile``
  therefore replaces the flagfile's value.
- The text is read as the field's type: ``true``/``false`` for a bool; an integer; a
  number; a string as typed; a tuple or list as ``(a,b)``, ``[a,b]``, ``a,b`` or ``a``
  (one element); a dict as a Python literal ``{'key': value}``.
- ``routers.NAME.model=KIND`` creates router ``NAME`` of ``KIND`` (a key of
  ``jaxroute.models.ROUTERS``) with the kind's defaults, or turns an existing entry into
  another kind (its fields back to the kind's defaults); the entry's other fields may be
  set before or after it.
- ``routers.NAME.loss_kwargs.KEY=VALUE`` and ``routers.NAME.hparams.KEY=(v1,v2,...)``
  add a keyword argument of the router's loss (a fixed value, or a grid trained in one
  vmapped state); the keys are checked against the loss's signature afterwards
  (:mod:`jaxroute.train.config_checks`).
- Any other field that does not exist is an error naming it, the closest field and the
  valid ones (:class:`ConfigError`, one line).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable, Sequence

import ml_collections

from jaxroute.configs import base
from jaxroute.models.table import ROUTERS

#: Router-entry fields whose value is a dict set as a whole or key by key; the first two
#: take new keys (a loss's keyword arguments), ``model_kwargs`` only the kind's fields.
OPEN_DICTS = ("loss_kwargs", "hparams")
DICT_FIELDS = (*OPEN_DICTS, "model_kwargs")


class ConfigError(ValueError):
    """A config name, override or value that cannot be used (one line; exit code 2)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown(what: str, word: str, choices: Iterable[str]) -> str:
    """One line: ``'word' is not a WHAT; did you mean 'x'? (valid: a, b, c)``."""
    choices = sorted(choices)
    hint = did_you_mean(word, choices)
    return f"'{word}' is not a {what}{hint} (valid: {', '.join(choices)})"


def parse_arg(arg: str, name: str = "config") -> tuple[str, str | None] | None:
    """``--config.a.b=v`` -> ``("a.b", "v")``; ``--config.a.b`` -> ``("a.b", None)`` (a
    bool set to true); ``--noconfig.a.b`` -> ``("a.b", "false")``; None for other args."""
    for dashes in ("--", "-"):
        for neg in ("", "no"):
            head = f"{dashes}{neg}{name}."
            if arg.startswith(head):
                path, eq, text = arg[len(head) :].partition("=")
                if neg:
                    if eq:
                        raise ConfigError(f"{arg}: --no{name}.FIELD takes no value")
                    return path, "false"
                return path, (text if eq else None)
    return None


# ------------------------------------------------------------------------- values


def _literal(text: str):
    """A Python literal, ``true``/``false`` as bools, anything else the text itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return text


def _bool(text: str, where: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ConfigError(f"--config.{where}={text}: expects true or false")


def _number(text, kind: type, where: str):
    """``text`` (or an already-parsed element) as an int or a float."""
    value = _literal(text) if isinstance(text, str) else text
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    name = "an integer" if kind is int else "a number"
    raise ConfigError(f"--config.{where}: {text!r} is not {name}")


def _elements(text: str) -> list:
    """``(a,b)``, ``[a,b]``, ``a,b``, ``a`` or ``()`` -> the elements."""
    value = _literal(text)
    if isinstance(value, tuple | list):
        return list(value)
    if not isinstance(value, str):
        return [value]
    inner = text.strip().removeprefix("(").removesuffix(")").removeprefix("[").removesuffix("]")
    return [_literal(x.strip()) for x in inner.split(",") if x.strip()]


def _sequence(old: Sequence, text: str, where: str):
    """A tuple or list field: every element as the type of the old value's elements."""
    items = _elements(text)
    kinds = {type(x) for x in old}
    if len(kinds) == 1:
        (kind,) = kinds
        if kind in (int, float):
            items = [_number(x, kind, where) for x in items]
        elif kind is str:
            items = [str(x) for x in items]
    return type(old)(items)


def _dict(text: str, where: str) -> dict:
    value = _literal(text)
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"--config.{where}={text}: expects a dict, e.g. \"{{'key': 1.0}}\"")
    return value


def _hparam_values(text, where: str) -> tuple[float, ...]:
    """One hyper-parameter's grid: numbers, as floats (the trainer's type)."""
    items = _elements(text) if isinstance(text, str) else list(text)
    if isinstance(text, int | float):
        items = [text]
    return tuple(_number(x, float, where) for x in items)


def _value(old, text: str, where: str):
    """``text`` read as the type of the field's current value ``old``."""
    if isinstance(old, bool):
        return _bool(text, where)
    if isinstance(old, int | float):
        return _number(text, type(old), where)
    if isinstance(old, str):
        return text
    if isinstance(old, tuple | list):
        return _sequence(old, text, where)
    return _literal(text)  # None: whatever the text is


# ------------------------------------------------------------------------ routers


def _is_router_entry(node) -> bool:
    return isinstance(node, ml_collections.ConfigDict) and "model" in node


def _dict_value(entry, field: str, text: str, where: str) -> ml_collections.ConfigDict:
    """A router entry's dict field set as a whole (``model_kwargs`` keeps the kind's
    defaults for the fields not given)."""
    given = _dict(text, where)
    if field == "hparams":
        given = {k: _hparam_values(v, f"{where}.{k}") for k, v in given.items()}
    if field == "model_kwargs":
        fields = dict(ROUTERS[entry.model].model_kwargs)
        for key in given:
            if key not in fields:
                raise ConfigError(f"--config.{where}: {unknown('field', key, fields)}")
        given = {**fields, **given}
    return ml_collections.ConfigDict(given)


def _set_kinds(config, overrides) -> None:
    """``routers.NAME.model=KIND`` first: create or re-kind entries (last one wins)."""
    kinds = {}
    for path, text in overrides:
        parts = path.split(".")
        if len(parts) == 3 and parts[0] == "routers" and parts[2] == "model":
            kinds[parts[1]] = text
    for name, kind in kinds.items():
        if kind not in ROUTERS:
            raise ConfigError(
                f"--config.routers.{name}.model: {unknown('router kind', str(kind), ROUTERS)}"
            )
        current = config.routers.get(name)
        if current is None or current.get("model") != kind:
            with config.routers.unlocked():
                config.routers[name] = base.router(kind)


def _missing(config, parts: list[str], i: int) -> ConfigError:
    """The one-line error for ``parts[i]``, which its parent does not have."""
    where = ".".join(parts[:i])
    node = config
    for p in parts[:i]:
        node = node[p]
    key = parts[i]
    if where == "routers":
        kinds = ", ".join(ROUTERS)
        return ConfigError(
            f"--config.{'.'.join(parts)}: {unknown('router', key, node.keys())}; to create "
            f"one, give --config.routers.{key}.model=KIND (kinds: {kinds})"
        )
    what = f"field of {where}" if where else "config field"
    if _is_router_entry(node):
        what = f"field of router kind '{node.model}' ({where})"
    return ConfigError(f"--config.{'.'.join(parts)}: {unknown(what, key, node.keys())}")


def _set(config, path: str, text: str | None) -> None:
    parts = path.split(".")
    if not all(parts):
        raise ConfigError(f"--config.{path}: empty field name")
    node = config
    for i, key in enumerate(parts[:-1]):
        if not isinstance(node, ml_collections.ConfigDict):
            where = ".".join(parts[:i])
            raise ConfigError(f"--config.{path}: {where} is a value, not a group of fields")
        if key not in node:
            raise _missing(config, parts, i)
        node = node[key]
    leaf, parent = parts[-1], parts[-2] if len(parts) > 1 else ""
    if not isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(f"--config.{path}: {'.'.join(parts[:-1])} is a value, not a group")
    if leaf not in node and not (parent in OPEN_DICTS and len(parts) >= 3):
        raise _missing(config, parts, len(parts) - 1)
    old = node.get(leaf)
    if text is None:  # --config.FIELD without a value: a bool set to true
        if not isinstance(old, bool):
            raise ConfigError(f"--config.{path}: give a value (--config.{path}=VALUE)")
        text = "true"
    if parent in OPEN_DICTS and len(parts) >= 3:
        value = _hparam_values(text, path) if parent == "hparams" else _literal(text)
    elif isinstance(old, ml_collections.ConfigDict):
        if leaf not in DICT_FIELDS or not _is_router_entry(node):
            fields = ", ".join(old.keys())
            raise ConfigError(
                f"--config.{path} is a group of fields ({fields}); set one with "
                f"--config.{path}.FIELD=VALUE"
            )
        value = _dict_value(node, leaf, text, path)
    else:
        value = _value(old, text, path)
    with node.unlocked():
        node[leaf] = value


def apply_overrides(config, overrides: Sequence[tuple[str, str | None]]):
    """A copy of ``config`` with ``overrides`` (``(dotted field, text)`` in command-line
    order, ``text`` None for a bare bool flag) applied by the rules above, locked."""
    config = config.copy_and_resolve_references()
    if "routers" in config:
        _set_kinds(config, overrides)
    for path, text in overrides:
        parts = path.split(".")
        if len(parts) == 3 and parts[0] == "routers" and parts[2] == "model":
            continue  # done by _set_kinds
        _set(config, path, text)
    config.lock()
    return config
