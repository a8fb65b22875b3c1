"""The ``taskprior`` router's fields: default, type and one line of help, stated once.

:class:`TaskPriorConfig` is the one source of the router table's ``fields`` and
``field_docs`` (:func:`~jaxroute.models.spec.dataclass_fields` and ``dataclass_docs``),
hence of ``base.router("taskprior")``, ``train --config_help`` and ``configs/best.py``
(which states only what differs), and of ``fit``, which reads a config entry through
:meth:`TaskPriorConfig.from_config`. Flax-free: the config files import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jaxroute.models.spec import read_fields


def _field(default: Any, doc: str):
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclasses.dataclass(frozen=True)
class TaskPriorConfig:
    """The task-posterior router's settings (see :mod:`jaxroute.models.taskprior`)."""

    steps: int = _field(300, "full-batch Adam steps of the task head")
    head_learning_rate: float = _field(3e-3, "task head learning rate")
    head_weight_decay: float = _field(1e-4, "task head weight decay")
    prior_strength: float = _field(
        1.0, "pseudo-prompts shrinking a task's means to the overall ones"
    )
    temperature: float = _field(1.0, "softmax temperature of the task posterior")
    blend_k: int = _field(0, "neighbours mixed into score and cost with weight 1 - w (0: none)")
    blend_weights: tuple[float, ...] = _field(
        (1.0,), "candidate prior weights w; several: chosen by cross-fitting"
    )
    cost_margin: float = _field(0.0, "quality per relative cost subtracted from scores (tie-break)")
    cost_margin_z: float = _field(
        0.0, "> 0: choose cost_margin by cross-fitting, z standard errors"
    )
    calibrate_temperature: bool = _field(False, "choose the temperature by cross-fitted task NLL")
    cv_folds: int = _field(5, "folds of the cross-fitting on the training prompts")
    mlp_hidden: int = _field(0, "width of a per-prompt BCE MLP in the blend (0: none)")
    mlp_steps: int = _field(400, "full-batch AdamW steps of the MLP")
    mlp_learning_rate: float = _field(1e-3, "MLP learning rate")
    mlp_weight_decay: float = _field(1e-2, "MLP weight decay")
    mlp_weights: tuple[float, ...] = _field(
        (0.0,), "candidate MLP weights v (with w: chosen by cross-fitting)"
    )
    irt_weights: tuple[float, ...] = _field(
        (0.0,),
        "candidate weights u of the item-response model's probabilities (irt.py) in the "
        "score; several: a larger u than the least only if it wins beyond the noise",
    )
    irt_hidden: int = _field(32, "trunk width of the blended item-response model")
    irt_skills: int = _field(4, "latent skills of the blended item-response model")
    irt_lr: float = _field(3e-3, "AdamW learning rate of the blended item-response model")
    irt_max_steps: int = _field(
        400, "most AdamW steps of the blended item-response model (early stopping)"
    )

    @classmethod
    def from_config(cls, rc: Mapping[str, Any]) -> TaskPriorConfig:
        """The fields of a config entry, each cast to its default's type.

        A field the entry lacks (a config written before the field existed) gets its
        default; the entry's other keys (``model``) are not read, except the removed
        fields of :data:`REMOVED`, refused unless at the value that switched them off.
        """
        for key, off in REMOVED.items():
            if key in rc and rc[key] != off:
                raise ValueError(
                    f"taskprior field '{key}' = {rc[key]!r}: removed (superseded or measured "
                    f"worse, docs/paper_results.md); only {off!r} is accepted"
                )
        return read_fields(cls, rc)


#: Fields of configs written before they were removed, and the value that switched each
#: off (the kNN blend inside the prior, ``knn_k``, superseded by ``blend_k``; the linear
#: residual, ``residual_loss``, which did worse out of fold: docs/paper_results.md).
REMOVED = {"knn_k": 0, "residual_loss": ""}
