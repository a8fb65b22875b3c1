"""The taskprior router's blend of its parts and its cost margin (NumPy, no state).

The score is ``w · prior + v · MLP + (1 − w − v) · neighbours`` (:func:`blend3`), then
optionally ``(1 − u) · s + u · irt`` (:func:`with_irt`, the item-response model's
probabilities), then ``s − margin · ĉ / max_m ĉ`` (:func:`with_margin`); the weights the
cross-fitting may choose among are :func:`candidate_pairs`.
"""

from __future__ import annotations

import numpy as np


def blend3(w: float, v: float, prior, near, mlp, prior_c, near_c):
    """Scores ``w · prior + v · mlp + (1 − w − v) · near`` and the matching costs.

    The MLP predicts no cost: the cost is the prior's and the neighbours' in the
    proportions ``w : (1 − w − v)``.

    >>> s, c = blend3(0.5, 0.25, [1.0], [0.0], [0.4], [2.0], [4.0])
    >>> s.tolist(), c.round(4).tolist()
    ([0.6], [2.6667])
    """
    rest = 1.0 - w - v
    s = w * np.asarray(prior) + rest * np.asarray(near)
    if v > 0:
        s = s + v * np.asarray(mlp)
    c = (w * np.asarray(prior_c) + rest * np.asarray(near_c)) / (w + rest)
    return s, c


def candidate_pairs(weights, mlp_weights, neighbours: bool) -> list[tuple[float, float]]:
    """The ``(w, v)`` pairs of prior and MLP weights that a blend can take: with
    neighbours every pair with ``w + v ≤ 1``; without, the prior takes what the MLP
    leaves (``w = 1 − v``).

    >>> candidate_pairs((0.5, 1.0), (0.0, 0.5), True)
    [(0.5, 0.0), (0.5, 0.5), (1.0, 0.0)]
    >>> candidate_pairs((0.5, 1.0), (0.0, 0.5), False)
    [(0.5, 0.5), (1.0, 0.0)]
    """
    if neighbours:
        return [(w, v) for w in weights for v in mlp_weights if w + v <= 1.0 + 1e-9]
    return sorted({(1.0 - v, v) for v in mlp_weights})


def candidate_key(w: float, v: float, with_mlp: bool) -> str:
    """Selection-record key of a candidate: ``"w"``, or ``"w+mlpV"`` with an MLP."""
    return f"{w}+mlp{v}" if with_mlp else str(w)


def with_irt(scores, irt, u: float) -> np.ndarray:
    """``(1 − u) · s + u · irt``: the item-response model's probabilities mixed into the
    scores (the costs are unchanged); ``u = 0`` returns ``scores`` itself.

    >>> with_irt(np.array([[0.8, 0.4]]), np.array([[0.2, 0.6]]), 0.25).round(3).tolist()
    [[0.65, 0.45]]
    """
    if u == 0:
        return scores
    return ((1.0 - u) * np.asarray(scores) + u * np.asarray(irt)).astype(np.float32)


def with_margin(scores: np.ndarray, pred_costs: np.ndarray, margin: float) -> np.ndarray:
    """``s − margin · ĉ / max_m ĉ``: a cost tie-break in quality units, per prompt.

    >>> with_margin(np.array([[0.80, 0.81]]), np.array([[1.0, 4.0]]), 0.02).round(3).tolist()
    [[0.795, 0.79]]
    """
    top = np.maximum(pred_costs.max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
    return (scores - margin * pred_costs / top).astype(np.float32)
