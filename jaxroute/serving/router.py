"""Routes new prompts with the routers of a trained workdir (the ``route`` app's library)."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import numpy as np

from jaxroute.train import experiment as E


def read_prompts_file(path) -> list[str]:
    """JSON lines: each a string or an object with a ``prompt`` field."""
    p = pathlib.Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such prompts file")
    prompts = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: line {i} is not JSON ({e})") from None
        if isinstance(obj, dict):
            if "prompt" not in obj:
                raise ValueError(f"{p}: line {i}: object without a 'prompt' field")
            obj = obj["prompt"]
        if not isinstance(obj, str):
            raise ValueError(f"{p}: line {i}: prompt is {type(obj).__name__}, not a string")
        prompts.append(obj)
    return prompts


@dataclasses.dataclass
class TrainedRouter:
    """One trained router (one seed) with the cost model, ready to route prompts."""

    name: str
    models: list[str]
    score_fn: object
    cost_fn: object
    encoder_dir: str | None
    prompt_view: str = "full"

    def scores_and_costs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(features, np.float32)
        return np.asarray(self.score_fn(x)), np.asarray(self.cost_fn(x))

    def route(self, prompts, *, budget=None, wtp=None) -> list[dict]:
        from jaxroute import encoders
        from jaxroute import routing as jrouting

        x = encoders.encode(
            encoders.apply_view(list(prompts), self.prompt_view), self.encoder_dir, progress=False
        )
        scores, costs = self.scores_and_costs(x)
        if budget is not None:
            choice = np.asarray(jrouting.budget_choice(scores, costs, budget))
        else:
            choice = np.asarray(jrouting.lambda_choice(scores, costs, wtp))
        out = []
        for i, p in enumerate(prompts):
            j = int(choice[i])
            out.append(
                {
                    "prompt": p,
                    "router": self.name,
                    "model": self.models[j],
                    "predicted_cost": float(costs[i, j]),
                    "scores": {m: float(s) for m, s in zip(self.models, scores[i], strict=True)},
                    "predicted_costs": {
                        m: float(c) for m, c in zip(self.models, costs[i], strict=True)
                    },
                }
            )
        return out


def load_router(workdir, *, router: str | None = None, seed_index: int = 0) -> TrainedRouter:
    """Restores router ``router`` (default: the first trained one) of seed ``seed_index``."""
    workdir = pathlib.Path(workdir)
    config = E.read_config(workdir)
    info_path = workdir / "run_info.json"
    if not info_path.exists():
        raise FileNotFoundError(f"{workdir}: no run_info.json; is this a trained workdir?")
    info = json.loads(info_path.read_text())
    if config.features.source != "encoder":
        raise ValueError(
            f"{workdir}: its routers were trained on '{config.features.source}' features "
            f"({info['feature_dim']}-d), not on the sentence encoder's, so new prompts "
            "cannot be routed with them; train with --config.features.source=encoder"
        )
    trained = [n for n in E.router_names(config) if config.routers[n].model != "knn"]
    name = router or (trained[0] if trained else None)
    if name not in trained:
        raise ValueError(f"router '{router}' is not a trained router of {workdir}: {trained}")
    seeds = info["seeds"]
    if not 0 <= seed_index < len(seeds):
        raise ValueError(f"--seed_index={seed_index} out of range for seeds {seeds}")
    if not config.cost_model.enabled:
        raise ValueError(f"{workdir}: trained without a cost model; cannot price new prompts")
    shape = (seeds, info["feature_dim"], len(info["models"]), info["n_train"], workdir)
    task, params = E.trained_group(name, config.routers[name], config, *shape)
    ctask, cparams = E.trained_group(
        E.COST_GROUP, config.cost_model, config, *shape, offset=E.COST_SEED_OFFSET
    )
    params, cparams = jax.tree.map(lambda a: a[seed_index], (params, cparams))
    score_fn = jax.jit(task.module.apply)
    capply = jax.jit(ctask.module.apply)
    cost_fn = lambda x: ctask.module.target_to_cost(capply(cparams, x))  # noqa: E731
    return TrainedRouter(
        name=name,
        models=list(info["models"]),
        score_fn=lambda x: score_fn(params, x),
        cost_fn=cost_fn,
        encoder_dir=config.features.encoder_dir or None,
        prompt_view=config.features.get("prompt_view", "full"),
    )


__all__ = ["TrainedRouter", "load_router", "read_prompts_file"]
