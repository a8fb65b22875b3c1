"""RoutingData: the one in-memory form of a routing benchmark (docs/method.md §1)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


class DataError(ValueError):
    """Invalid routing data; the message names the file, field/column, row and model."""


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


@dataclasses.dataclass(frozen=True, eq=False)
class RoutingData:
    """Quality and cost of M models on N prompts, with optional features and texts.

    Attributes:
      quality: float32 ``[N, M]`` observed quality in [0, 1] (0/1 correctness or graded).
      cost: float32 ``[N, M]`` cost in USD, finite and >= 0.
      models: the M model names (column order of ``quality`` and ``cost``).
      tasks: ``[N]`` task (``eval_name``) of each prompt.
      sample_ids: ``[N]`` unique prompt ids.
      features: optional float32 ``[N, D]`` prompt features (e.g. sentence embeddings).
      prompts: optional ``[N]`` prompt texts.
      source: where the data came from (a path or ``synthetic(...)``), used in errors.

    Construction validates everything and raises :class:`DataError` naming the field,
    the row (sample id) and the model of the first violation.

    >>> d = RoutingData(quality=[[1, 0], [1, 1]], cost=[[2e-3, 1e-4], [2e-3, 1e-4]],
    ...                 models=["big", "small"], tasks=["qa", "qa"], sample_ids=["a", "b"])
    >>> d.num_prompts, d.num_models
    (2, 2)
    """

    quality: np.ndarray
    cost: np.ndarray
    models: tuple[str, ...]
    tasks: np.ndarray
    sample_ids: np.ndarray
    features: np.ndarray | None = None
    prompts: np.ndarray | None = None
    source: str | None = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        src = _where(self.source)
        set_("models", tuple(str(m) for m in self.models))
        set_("quality", _as_matrix(self.quality, "quality", src))
        set_("cost", _as_matrix(self.cost, "cost", src))
        set_("tasks", np.asarray(self.tasks, dtype=object).astype(str))
        set_("sample_ids", np.asarray(self.sample_ids, dtype=object).astype(str))
        if self.features is not None:
            set_("features", _as_matrix(self.features, "features", src))
        if self.prompts is not None:
            set_("prompts", np.asarray(self.prompts, dtype=object))
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self):
        src = _where(self.source)
        n, m = self.quality.shape
        if n == 0:
            raise DataError(f"{src}field 'quality': no rows (0 prompts): nothing to route")
        if m < 2:
            raise DataError(f"{src}field 'quality': need at least 2 models, got {m}")
        if len(self.models) != m:
            raise DataError(
                f"{src}field 'models': {len(self.models)} names for {m} quality columns"
            )
        if len(set(self.models)) != m:
            dup = sorted({x for x in self.models if self.models.count(x) > 1})
            raise DataError(f"{src}field 'models': duplicate model names {dup}")
        if self.cost.shape != (n, m):
            raise DataError(f"{src}field 'cost': shape {self.cost.shape} != quality shape {(n, m)}")
        for name in ("tasks", "sample_ids", "prompts"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n,):
                raise DataError(f"{src}field '{name}': shape {arr.shape}, expected ({n},)")
        if self.features is not None and self.features.shape[0] != n:
            raise DataError(f"{src}field 'features': {self.features.shape[0]} rows for {n} prompts")
        ids, counts = np.unique(self.sample_ids, return_counts=True)
        if (counts > 1).any():
            dup = ids[counts > 1][:5].tolist()
            raise DataError(f"{src}field 'sample_ids': duplicate sample ids {dup}")
        self._check_cells("quality", ~np.isfinite(self.quality), "is not finite")
        self._check_cells("quality", (self.quality < 0) | (self.quality > 1), "is outside [0, 1]")
        self._check_cells("cost", ~np.isfinite(self.cost), "is not finite")
        self._check_cells("cost", self.cost < 0, "is negative")
        if self.features is not None:
            bad = ~np.isfinite(self.features)
            if bad.any():
                i, j = np.argwhere(bad)[0]
                raise DataError(
                    f"{src}field 'features': value {self.features[i, j]} at sample id "
                    f"'{self.sample_ids[i]}' (row {i}), dimension {j} is not finite"
                )

    def _check_cells(self, field: str, bad: np.ndarray, what: str):
        if bad.any():
            i, j = np.argwhere(bad)[0]
            value = getattr(self, field)[i, j]
            what = f"{what} (NaN: an empty cell)" if np.isnan(value) else what
            raise DataError(
                f"{_where(self.source)}field '{field}': value {value} at sample id "
                f"'{self.sample_ids[i]}' (row {i}), model '{self.models[j]}' {what} "
                f"({int(bad.sum())} bad cells in all)"
            )

    # ------------------------------------------------------------------ properties
    @property
    def num_prompts(self) -> int:
        return int(self.quality.shape[0])

    @property
    def num_models(self) -> int:
        return int(self.quality.shape[1])

    @property
    def task_names(self) -> list[str]:
        """Task names in order of first appearance."""
        return list(dict.fromkeys(self.tasks.tolist()))

    def __len__(self) -> int:
        return self.num_prompts

    def __repr__(self) -> str:
        feats = "none" if self.features is None else f"{self.features.shape[1]}-d"
        return (
            f"RoutingData(n_prompts={self.num_prompts}, n_models={self.num_models}, "
            f"tasks={self.task_names}, features={feats}, source={self.source!r})"
        )

    # ------------------------------------------------------------------ helpers
    def replace(self, **changes) -> RoutingData:
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def subset(self, index: Sequence[int] | np.ndarray) -> RoutingData:
        """Rows ``index`` (integer indices or a boolean mask), in that order."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        take = lambda a: None if a is None else a[index]  # noqa: E731
        return dataclasses.replace(
            self,
            quality=self.quality[index],
            cost=self.cost[index],
            tasks=self.tasks[index],
            sample_ids=self.sample_ids[index],
            features=take(self.features),
            prompts=take(self.prompts),
        )

    def select_models(self, models: Sequence[str]) -> RoutingData:
        """Keep the named models, in the given order."""
        unknown = [m for m in models if m not in self.models]
        if unknown:
            raise DataError(
                f"{_where(self.source)}unknown models {unknown}; known: {list(self.models)}"
            )
        cols = [self.models.index(m) for m in models]
        return dataclasses.replace(
            self, quality=self.quality[:, cols], cost=self.cost[:, cols], models=tuple(models)
        )

    def select_tasks(self, tasks: Sequence[str]) -> RoutingData:
        """Keep the prompts of the named tasks."""
        unknown = sorted(set(tasks) - set(self.task_names))
        if unknown:
            raise DataError(
                f"{_where(self.source)}unknown tasks {unknown}; known: {self.task_names}"
            )
        return self.subset(np.isin(self.tasks, list(tasks)))

    def with_features(self, features: np.ndarray) -> RoutingData:
        return dataclasses.replace(self, features=features)


def suspicious(data: RoutingData) -> list[str]:
    """Legitimate but suspicious data, one warning line each (the caller logs them).

    A model whose quality is the same on every prompt (all 0: never right, or all 1) or
    whose cost is 0 everywhere is usually a broken export, but can be real (a free local
    model), so it is a warning, not an error.

    >>> d = RoutingData(quality=[[1, 0], [1, 1]], cost=[[0, 1e-4], [0, 1e-4]],
    ...                 models=["a", "b"], tasks=["t", "t"], sample_ids=["x", "y"])
    >>> suspicious(d)  # doctest: +NORMALIZE_WHITESPACE
    ["model 'a': quality is 1.0 on all 2 prompts (a constant column)",
     "model 'a': cost is 0 on all 2 prompts"]
    """
    out = []
    src = _where(data.source)
    n = data.num_prompts
    for j, m in enumerate(data.models):
        q, c = data.quality[:, j], data.cost[:, j]
        if n > 1 and (q == q[0]).all():
            out.append(
                f"{src}model '{m}': quality is {float(q[0])} on all {n} prompts (a constant column)"
            )
        if (c == 0).all():
            out.append(f"{src}model '{m}': cost is 0 on all {n} prompts")
    return out


def concat(parts: Sequence[RoutingData]) -> RoutingData:
    """Concatenate datasets with the same models (rows stacked, ids must stay unique)."""
    if not parts:
        raise DataError("concat: nothing to concatenate")
    first = parts[0]
    for p in parts[1:]:
        if p.models != first.models:
            raise DataError(
                f"concat: models of {p.source} {list(p.models)} differ from "
                f"{first.source} {list(first.models)}"
            )
    for name in ("features", "prompts"):
        have = [getattr(p, name) is not None for p in parts]
        if any(have) and not all(have):
            raise DataError(f"concat: field '{name}' present in some parts only")
    cat = lambda name: (  # noqa: E731
        None if getattr(first, name) is None else np.concatenate([getattr(p, name) for p in parts])
    )
    return RoutingData(
        quality=cat("quality"),
        cost=cat("cost"),
        models=first.models,
        tasks=cat("tasks"),
        sample_ids=cat("sample_ids"),
        features=cat("features"),
        prompts=cat("prompts"),
        source="+".join(str(p.source) for p in parts),
    )


def _as_matrix(x, field: str, src: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise DataError(f"{src}field '{field}': not numeric ({e})") from None
    if arr.ndim != 2:
        raise DataError(f"{src}field '{field}': expected a 2-d array, got shape {arr.shape}")
    return arr
