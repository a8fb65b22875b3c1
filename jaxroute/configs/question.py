"""kNN, ``best`` and the item-response router ``irt`` side by side (docs/question_routing.md).

    python -m jaxroute.launch.train --flagfile=launch/question_router.flags --data_path=PATH

``irt`` (:mod:`jaxroute.models.irt`) reads per question a difficulty, a discrimination,
latent skill loadings and a task posterior from the MiniLM features, and per model an
ability on each task and skill; it is trained full batch through the BCE of
``jaxroute.losses.LOSSES`` plus the task cross-entropy, and prices a model by the mean
cost of the 100 nearest training prompts (as kNN does); its score is ``0.25 · σ(z) +
0.75 ·`` those neighbours' mean quality (alone it never reached the best single model's
quality on the validation folds). Its fixed values were chosen on
cross-fitted validation folds of the training parts of the development protocols, never
on a test split, and are the same for every dataset (docs/question_routing.md lists the
candidates, the folds and every test read).

Everything else is ``jaxroute/configs/best.py``: in-domain split, seeds 42-46, MiniLM
features of the prompts as stored, no cost model (every router brings its own cost
estimate), budget rule and λ rule side by side in report.json.

``get_config`` arg: ``tiny`` (synthetic CPU smoke size).
"""

import ml_collections

from jaxroute.configs import base, best

#: The chosen configuration of ``irt`` (router fields of the ``irt`` kind).
QUESTION = {
    "hidden": 32,
    "skills": 4,
    "irt_loss": "bce",
    "irt_steps": 400,
    "irt_check_every": 25,
    "irt_learning_rate": 3e-3,
    "irt_weight_decay": 1e-2,
    "task_weight": 1.0,
    "irt_val_fraction": 0.2,
    "cost_k": 100,
    "knn_weight": 0.75,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = best.get_config(arg)  # validates arg (tiny)
    tiny = "tiny" in {a.strip() for a in (arg or "").split(",")}
    fields = dict(QUESTION)
    if tiny:
        fields.update(hidden=16, skills=2, irt_steps=50, cost_k=10)
    c.routers.irt = base.router("irt", **fields)
    return c
