"""The text of ``train --config_help``: every field, every loss keyword, every router kind.

Field descriptions come from the ``c.a.b = ...  # comment`` lines of the packaged
configs, :data:`FIELD_DOCS`, the router table's ``field_docs`` and the loss signatures
(``jaxroute.losses.LOSSES``), so nothing is described twice.
"""

from __future__ import annotations

import re

from jaxroute.configs._load import CONFIG_DIR
from jaxroute.losses import LOSSES
from jaxroute.models.table import ROUTERS, field_doc

# One line for the config fields whose line in the config file has no comment.
FIELD_DOCS = {
    "seeds": "one split + init + batch order per seed",
    "train.epochs": "epochs per router, >= 1 (a router's own epochs win when > 0)",
    "train.batch_size": "prompts per training step",
    "train.learning_rate": "optimiser learning rate (a router's own wins when > 0)",
    "train.weight_decay": "decoupled weight decay: train.optimizer=adamw only",
    "train.warmup_steps": "linear warm-up steps from 0 to the learning rate (both schedules)",
    "eval.n_budgets": "budget-grid size (quantiles or log points); also the λ-curve points kept",
    "cost_model.enabled": "False: route with the true costs",
}

RULES = """\
Set any field with --config.NAME=VALUE. Rules:
  - the last value given replaces the whole field, also after --flagfile and also for
    tuples, lists and dicts: --config.seeds='(42,43)' gives exactly (42, 43);
  - values: true/false; numbers; strings as typed; tuples as '(a,b)', 'a,b' or 'a';
    dicts as "{'key': value}";
  - a new router: --config.routers.NAME.model=KIND (a kind below, with its defaults),
    then any of its fields, in any order (--config.routers.NAME.loss=LOSS, ...);
  - a loss's keyword argument: --config.routers.NAME.loss_kwargs.KEY=VALUE; a grid of
    values trained in one vmapped state (reported as NAME[KEY=v]):
    --config.routers.NAME.hparams.KEY='(v1,v2,v3)';
  - a misspelt field is refused with the valid ones (exit code 2)."""


def _config_comments() -> dict[str, str]:
    """``field -> comment`` from the ``c.a.b = ...  # comment`` lines of the packaged
    configs; ``rc.x`` lines (router entries) under ``*.x``."""
    pattern = re.compile(r"^\s*(c|rc)\.([\w.]+)\s*=.*?#\s*(.+)$")
    docs: dict[str, str] = {}
    for path in sorted(CONFIG_DIR.glob("*.py")):
        for line in path.read_text().splitlines():
            m = pattern.match(line)
            if m:
                key = m.group(2) if m.group(1) == "c" else f"*.{m.group(2)}"
                docs.setdefault(key, m.group(3).strip())
    return docs


def _loss_of(config, parts: list[str]) -> str | None:
    """The loss of the router entry a ``...loss_kwargs.KEY`` / ``...hparams.KEY`` is in."""
    node = config
    for p in parts[:-2]:
        node = node[p]
    return node.get("loss")


def config_fields(config) -> list[tuple[str, str, str]]:
    """Every leaf field of ``config`` as ``(dotted name, value, one line)``."""
    docs = _config_comments()

    def doc(key: str) -> str:
        if key in FIELD_DOCS:
            return FIELD_DOCS[key]
        if key in docs:
            return docs[key]
        parts = key.split(".")
        if len(parts) >= 3 and parts[-2] in ("loss_kwargs", "hparams"):
            loss = _loss_of(config, parts)
            what = "values trained side by side" if parts[-2] == "hparams" else "set"
            return f"keyword argument of loss '{loss}', {what}"
        if len(parts) >= 2 and f"*.{parts[-1]}" in docs and "model_kwargs" not in parts:
            return docs[f"*.{parts[-1]}"]
        if "model_kwargs" in parts:
            return field_doc(parts[-1]) or "field of the router's Flax module (jaxroute.models)"
        return field_doc(parts[-1])

    out = []

    def walk(node, prefix):
        for k in node.keys():
            v = node[k]
            key = f"{prefix}{k}"
            if hasattr(v, "keys") and not isinstance(v, str) and len(v):
                walk(v, key + ".")
            else:
                shown = repr(v.to_dict()) if hasattr(v, "to_dict") else repr(v)
                out.append((key, shown, doc(key)))

    walk(config, "")
    return out


def _loss_keywords(config) -> list[str]:
    """One line per loss keyword a configured router could set and has not."""
    lines = []
    entries = [("cost_model", config.get("cost_model"))]
    entries += [(f"routers.{n}", rc) for n, rc in (config.get("routers") or {}).items()]
    for where, rc in entries:
        if rc is None or rc.get("model") not in ROUTERS or rc.get("loss") not in LOSSES:
            continue
        spec = ROUTERS[rc.model]
        if not spec.trainable or spec.objective is not None:
            continue
        given = set(rc.get("loss_kwargs") or {}) | set(rc.get("hparams") or {})
        for key, default in LOSSES[rc.loss].defaults.items():
            if key not in given:
                lines.append(
                    (f"{where}.loss_kwargs.{key} = {default!r}", f"loss '{rc.loss}' default")
                )
    return _aligned(lines)


def _aligned(rows: list[tuple[str, str]]) -> list[str]:
    if not rows:
        return []
    width = max(len(a) for a, _ in rows)
    return [f"  {a.ljust(width)}  # {b}" if b else f"  {a}" for a, b in rows]


def _losses() -> list[str]:
    rows = []
    for name, spec in LOSSES.items():
        kw = ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items()) or "(none)"
        rows.append((f"{name} [{spec.kind}]", kw))
    width = max(len(a) for a, _ in rows)
    return [f"  {a.ljust(width)}  {b}" for a, b in rows]


def _kinds() -> list[str]:
    rows = []
    for name, spec in ROUTERS.items():
        fields = [*(("loss", "loss_kwargs", "hparams") if spec.trainable else ())]
        fields += [f"model_kwargs.{k}" for k in spec.model_kwargs]
        fields += list(spec.fields)
        rows.append((name, f"{spec.description}; fields: {', '.join(fields) or '(none)'}"))
    width = max(len(a) for a, _ in rows)
    return [f"  {a.ljust(width)}  {b}" for a, b in rows]


def config_help(config) -> str:
    """The text of ``--config_help``: the rules, one line per field (``name = value  #
    doc``), the loss keywords each router could set, the losses and the router kinds."""
    rows = [(f"{k} = {v}", d) for k, v, d in config_fields(config)]
    lines = [RULES, "", "Config fields:", *_aligned(rows)]
    extra = _loss_keywords(config)
    if extra:
        lines += ["", "Loss keyword arguments not set (loss_kwargs.KEY, or hparams.KEY):", *extra]
    lines += [
        "",
        "Losses (routers.NAME.loss) and their keyword arguments with defaults:",
        *_losses(),
        "",
        "Router kinds (routers.NAME.model; a new NAME creates a router):",
        *_kinds(),
        "",
        "Examples:",
        "  --config.seeds='(42,43)'",
        "  --config.routers.hinge.model=equirouter --config.routers.hinge.loss=pairwise_hinge",
        "  --config.routers.equirouter.loss_kwargs.rank_weight=10",
        "  --config.routers.equirouter.hparams.rank_weight='(0,1,10)'",
    ]
    return "\n".join(lines)
