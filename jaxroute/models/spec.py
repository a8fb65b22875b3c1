"""``RouterSpec``: what the experiment needs to know about one kind of router.

Flax-free on purpose: the config files read the table (:mod:`jaxroute.models.table`)
for defaults without importing any model. Callables may be given as objects or as
``"package.module:attribute"`` strings, imported on first use.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from jaxroute.models import fitted as _fitted


def resolve(ref: Any) -> Any:
    """``"pkg.mod:attr"`` -> the attribute (imported now); anything else as is."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def dataclass_fields(cls) -> dict[str, Any]:
    """Field -> default of a dataclass of router settings (a table entry's ``fields``)."""
    return {f.name: f.default for f in dataclasses.fields(cls)}


def dataclass_docs(cls) -> dict[str, str]:
    """Field -> its ``metadata["doc"]`` line (a table entry's ``field_docs``)."""
    return {f.name: f.metadata["doc"] for f in dataclasses.fields(cls) if "doc" in f.metadata}


def read_fields(cls, rc: Mapping[str, Any]):
    """``cls`` from a config entry: each field cast to its default's type (a tuple's
    items to float), its default where the entry lacks it; other keys are not read."""
    values = {}
    for f in dataclasses.fields(cls):
        value = rc[f.name] if f.name in rc else f.default
        if isinstance(f.default, tuple):
            value = tuple(float(v) for v in value)
        else:
            value = type(f.default)(value)
        values[f.name] = value
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class RouterSpec:
    """One router kind. Trainable routers give ``module``; kNN-like ones ``fit``/``predict``.

    Attributes:
      module: a Flax module class (or its ``"pkg.mod:Class"``) built as
        ``module(num_models=M, **model_kwargs)``, mapping features ``[B, D]`` to ``[B, M]``.
        Empty for routers that do not train by gradient.
      model_kwargs: the module's fields and their defaults (each becomes a config field
        ``routers.NAME.model_kwargs.FIELD``).
      objective: optional ``objective(module, rc) -> fn(outputs, batch, **hparams)``; by
        default a trainable router trains with its config's loss (``rc.loss``).
      fit: non-trainable routers: ``fit(train: RoutingData, rc) -> state``.
      predict: non-trainable routers: ``predict(state, x [N, D], rc) -> (scores [N, M],
        predicted costs [N, M] or None)``; None routes with the cost model's predictions.
      choices: non-trainable routers, optional: ``choices(state) -> dict | None``, what
        ``fit`` chose from the training data (JSON-able; e.g. a cross-fitted weight and
        the scores that chose it). The report keeps one record per seed under
        ``routers[name]["fitted"]``; None (or no ``choices``) records nothing.
      state_type: non-trainable routers, optional: the dataclass (or its
        ``"pkg.mod:Class"``) that ``fit`` returns; without it the state is a tree of
        mappings, tuples, arrays and JSON scalars. Either way it is stored as arrays and
        JSON (:mod:`jaxroute.models.fitted`), never pickled.
      fields: other config fields of this router kind and their defaults (kNN: ``k``,
        ``cost_source``); they exist on this kind's config entries only.
      field_docs: one line per entry of ``fields`` and, optionally, of ``model_kwargs``
        (shown by ``train --config_help``).
      batch_fields: extra training-batch arrays, name -> ``fn(part, train) -> [N, ...]``
        (``part`` the rows batched, ``train`` the seed's training part; e.g. a task index
        from ``part.tasks``). The objective finds them in ``batch``.
      description: one line for listings.
    """

    module: Any = None
    model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    objective: Any = None
    fit: Any = None
    predict: Any = None
    choices: Any = None
    state_type: Any = None
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    field_docs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    batch_fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        if (self.module is None) == (self.fit is None or self.predict is None):
            raise ValueError("a RouterSpec has either a module or both fit and predict")

    @property
    def trainable(self) -> bool:
        """Trained by gradient (a Flax module), vmapped over seeds and checkpointed."""
        return self.module is not None

    def build(self, num_models: int, **model_kwargs: Any):
        """The Flax module for ``num_models`` candidates (table defaults, then overrides)."""
        kwargs = {**self.model_kwargs, **model_kwargs}
        return resolve(self.module)(num_models=num_models, **kwargs)

    def make_objective(self, module, rc) -> Callable[..., Any] | None:
        """The router's own objective, or None (train with the config's loss)."""
        return None if self.objective is None else resolve(self.objective)(module, rc)

    def fit_state(self, train, rc) -> Any:
        return resolve(self.fit)(train, rc)

    def predict_with(self, state, x, rc):
        return resolve(self.predict)(state, x, rc)

    def fitted_choices(self, state) -> dict[str, Any] | None:
        """What ``fit`` chose for ``state`` (None: the router records nothing)."""
        return None if self.choices is None else resolve(self.choices)(state)

    def state_to_arrays(self, state) -> tuple[dict[str, Any], Any]:
        """A fitted state as ``(flat dict of arrays, JSON-able tree of the rest)``."""
        if self.state_type is not None:
            state = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
        return _fitted.flatten(state)

    def state_from_arrays(self, arrays, meta) -> Any:
        """The state :meth:`state_to_arrays` took apart (exactly: arrays and floats)."""
        tree = _fitted.unflatten(arrays, meta)
        return tree if self.state_type is None else resolve(self.state_type)(**tree)

    def extra_batch(self, part, train) -> dict[str, Any]:
        return {k: resolve(fn)(part, train) for k, fn in self.batch_fields.items()}
