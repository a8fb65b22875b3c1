"""kNN and jaxroute's best router (``best``) on any RouterBench-format dataset (issue 17).

    python -m jaxroute.launch.train --flagfile=launch/best_router.flags --data_path=PATH

``best`` is the task-posterior router (:mod:`jaxroute.models.taskprior`) with the
choices it makes itself (temperature, blend weights, cost margin), on cross-fitted
predictions of its own training prompts (5 folds; the test split is never read):

- a linear task head fitted to the training prompts' task labels, its posterior
  temperature-scaled (the temperature of least cross-fitted task cross-entropy); per
  task, the mean quality (shrunk to the overall mean) and cost of every model, weighted
  by that posterior: the *task prior*;
- the prior is blended with the mean of the 30 nearest training prompts, ``w · prior +
  (1 − w) · neighbours``, with ``w`` in {0, 0.25, 0.5, 0.75, 1} chosen by the λ rule's
  cost at the best single model's quality (on a dataset whose tasks say nothing, or with
  one task, this falls back to the neighbours);
- a per-prompt MLP (``Dense(256) → GELU → Dense(M)``, sigmoid outputs, BCE on quality)
  joins the blend: ``w · prior + v · MLP + (1 − w − v) · neighbours`` with ``v`` in
  {0, 0.25, 0.5} chosen jointly with ``w`` the same way (it helps with thousands of
  training prompts; with about a thousand the cross-fitting leaves it out);
- a cost margin: scores become ``s − m · ĉ / max ĉ`` (a cost tie-break in quality units),
  with ``m`` the largest margin on ``[0, 0.2]`` whose routing at the largest budget still
  beats the best single model's quality by three standard errors. It matters for the
  per-prompt budget rule, whose top budget otherwise sends near-ties to the dearest
  model; the λ rule's low-cost end is unchanged.

It reads only the prompt's features at test time. The fixed values (30 neighbours, the
weight grid, z = 3, 5 folds) were set on cross-fitted predictions of the training splits
of the development protocols (the RouterBench subset at 80/20, llmrouter9 at 20/80 and
80/20), never on a test split, and are the same for every dataset: nothing depends on a
dataset's name, size or model list.

Both routers use their own cost estimates, so no cost model is trained. MiniLM features
of the prompt as stored (docs/method.md §6), in-domain 20/80 split, seeds 42-46; the report
carries the budget rule and the λ rule side by side.

``get_config`` arg: ``tiny`` (synthetic CPU smoke size).
"""

import ml_collections

from jaxroute.configs import base

#: The chosen configuration of ``best``: the fields of the ``taskprior`` kind that differ
#: from their defaults (jaxroute/models/taskprior_config.py); ``--config_help`` lists all.
BEST = {
    "blend_k": 30,
    "blend_weights": (0.0, 0.25, 0.5, 0.75, 1.0),
    "cost_margin_z": 3.0,
    "calibrate_temperature": True,
    "mlp_hidden": 256,
    "mlp_weights": (0.0, 0.25, 0.5),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = {a.strip() for a in (arg or "").split(",") if a.strip()}
    unknown = args - {"tiny"}
    if unknown:
        raise ValueError(f"get_config: unknown args {sorted(unknown)} (tiny)")
    tiny = "tiny" in args
    c = base.get_config("tiny" if tiny else "routerbench")
    c.cost_model.enabled = False  # both routers bring their own cost estimate
    r = ml_collections.ConfigDict()
    r.knn = base.router("knn", k=10 if tiny else 100, cost_source="own")
    r.best = base.router("taskprior", **BEST)
    c.routers = r
    return c
