"""The built-in synthetic benchmark: RouterBench-like data with learnable features.

Calibrated to the RouterBench facts of docs/method.md §1 and §6: RouterBench's
11 models with their mean cost per query, GPT-4 best on average and dearest, several
tasks with different model strengths, prompt difficulty, mostly 0/1 quality (one graded
task), most prompts with two or more models tied at the best quality, costs from prompt
length x price, and features from which task and difficulty are learnable but noisy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxroute.data._types import DataError, RoutingData

# name, mean USD per query on RouterBench 5-shot (its published per-model costs), ability
# (logit scale).
ROUTERBENCH_MODELS = (
    ("WizardLM/WizardLM-13B-V1.2", 0.00012, 0.1),
    ("claude-instant-v1", 0.00037, 0.9),
    ("claude-v1", 0.00359, 1.1),
    ("claude-v2", 0.00381, 1.15),
    ("gpt-3.5-turbo-1106", 0.00042, 0.95),
    ("gpt-4-1106-preview", 0.00503, 2.0),
    ("meta/code-llama-instruct-34b-chat", 0.00031, -0.1),
    ("meta/llama-2-70b-chat", 0.00038, 0.5),
    ("mistralai/mistral-7b-chat", 0.00008, 0.0),
    ("mistralai/mixtral-8x7b-chat", 0.00025, 0.85),
    ("zero-one-ai/Yi-34B-Chat", 0.00033, 1.0),
)
STRONG_MODEL = "gpt-4-1106-preview"

# name, mean prompt length factor, graded (True: quality in tenths, MT-Bench-like).
TASKS = (
    ("mmlu", 1.0, False),
    ("gsm8k", 1.2, False),
    ("arc-challenge", 0.9, False),
    ("winogrande", 0.5, False),
    ("mbpp", 1.4, False),
    ("mt-bench", 1.6, True),
    ("hellaswag", 0.8, False),
)

_TOPICS = {
    "mmlu": "history law biology physics economics philosophy chemistry medicine",
    "hellaswag": "story scene kitchen sports video everyday continuation activity",
    "gsm8k": "apples trains dollars percent minutes ratio total fractions",
    "arc-challenge": "science energy plants rocks weather magnets cells heat",
    "winogrande": "pronoun sentence blank because trophy suitcase friend option",
    "mbpp": "python function list string return integer sort dictionary",
    "mt-bench": "write essay roleplay explain reasoning letter poem advice",
}
_HARD_WORDS = "multi-step tricky subtle advanced rigorous obscure compound nested"
_EASY_WORDS = "simple basic direct short obvious common plain easy"


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator (defaults give RouterBench-like statistics)."""

    n_prompts: int = 4000
    n_tasks: int = 6  # the first n_tasks of TASKS (1..7)
    feature_dim: int = 64
    seed: int = 0
    task_skill_std: float = 0.6  # per (task, model) ability offset
    difficulty_scale: float = 2.2  # weight of prompt difficulty on every model
    noise_std: float = 0.8  # independent per (prompt, model) noise
    feature_noise: float = 0.6  # noise of the features around task/difficulty signal
    with_prompts: bool = True


def synthetic(
    n_prompts: int = 4000,
    seed: int = 0,
    *,
    n_tasks: int = 6,
    feature_dim: int = 64,
    **kwargs,
) -> RoutingData:
    """Generates a RouterBench-like routing benchmark, deterministic from ``seed``.

    Quality of model m on prompt i of task t is
    ``1[a_m + δ_{t,m} − κ·d_i + ε_{i,m} > 0]`` (a graded task rounds the sigmoid of the
    same logit to tenths), with ability ``a_m``, task offset ``δ``, difficulty ``d_i`` and
    noise ``ε``. Cost is prompt length x each model's price. Features mix a task vector,
    a difficulty direction and noise, L2-normalised.

    >>> d = synthetic(n_prompts=200, seed=1)
    >>> d.num_prompts, d.num_models, d.features.shape
    (200, 11, (200, 64))
    """
    cfg = SyntheticConfig(
        n_prompts=n_prompts, seed=seed, n_tasks=n_tasks, feature_dim=feature_dim, **kwargs
    )
    if cfg.n_prompts < 1:
        raise DataError(f"synthetic: n_prompts must be >= 1, got {cfg.n_prompts}")
    if not 1 <= cfg.n_tasks <= len(TASKS):
        raise DataError(f"synthetic: n_tasks must be in 1..{len(TASKS)}, got {cfg.n_tasks}")
    rng = np.random.default_rng(cfg.seed)
    models = [m[0] for m in ROUTERBENCH_MODELS]
    mean_cost = np.array([m[1] for m in ROUTERBENCH_MODELS])
    ability = np.array([m[2] for m in ROUTERBENCH_MODELS])
    tasks = TASKS[: cfg.n_tasks]
    n, m, t = cfg.n_prompts, len(models), len(tasks)
    strong = models.index(STRONG_MODEL)

    # Fixed structure (its own stream so that sizes don't change it).
    srng = np.random.default_rng([cfg.seed, 1])
    skill = srng.normal(0.0, cfg.task_skill_std, size=(t, m))
    skill[:, strong] = np.abs(skill[:, strong]) * 0.3  # GPT-4 strong everywhere
    task_vec = srng.normal(size=(t, cfg.feature_dim))
    diff_dir = srng.normal(size=cfg.feature_dim)

    task_id = rng.integers(0, t, size=n)
    difficulty = rng.normal(size=n)
    logit = (
        ability[None, :]
        + skill[task_id]
        - cfg.difficulty_scale * difficulty[:, None]
        + rng.normal(0.0, cfg.noise_std, size=(n, m))
    )
    graded = np.array([g for _, _, g in tasks])[task_id]
    quality = (logit > 0).astype(np.float32)
    soft = np.round(1.0 / (1.0 + np.exp(-logit)) * 10.0) / 10.0
    quality[graded] = soft[graded]

    length_factor = np.array([lf for _, lf, _ in tasks])[task_id]
    length = length_factor * rng.lognormal(0.0, 0.35, size=n) * (1.0 + 0.2 * difficulty.clip(-2, 2))
    length = length / length.mean() if n > 1 else length
    out_len = rng.lognormal(0.0, 0.15, size=(n, m))
    cost = (mean_cost[None, :] * length[:, None] * out_len).astype(np.float32)

    feats = (
        task_vec[task_id]
        + 0.8 * difficulty[:, None] * diff_dir[None, :] / np.sqrt(cfg.feature_dim) * 4
        + cfg.feature_noise * rng.normal(size=(n, cfg.feature_dim))
    )
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)

    prompts = None
    if cfg.with_prompts:
        prompts = np.array(
            [_prompt(rng, tasks[task_id[i]][0], difficulty[i], i) for i in range(n)], dtype=object
        )
    names = np.array([tasks[k][0] for k in task_id])
    ids = np.array([f"{names[i]}.synthetic.{i}" for i in range(n)])
    return RoutingData(
        quality=quality,
        cost=cost,
        models=tuple(models),
        tasks=names,
        sample_ids=ids,
        features=feats.astype(np.float32),
        prompts=prompts,
        source=f"synthetic(n_prompts={n}, seed={cfg.seed})",
    )


def _prompt(rng: np.random.Generator, task: str, difficulty: float, i: int) -> str:
    topic = _TOPICS[task].split()
    tone = (_HARD_WORDS if difficulty > 0 else _EASY_WORDS).split()
    words = rng.choice(topic, size=4).tolist() + rng.choice(tone, size=2).tolist()
    return f"['{task} question {i}: a {' '.join(words)} problem.']"


def synthetic_from_spec(spec: str) -> RoutingData:
    """``synthetic`` or ``synthetic:n_prompts=2000,seed=1,feature_dim=32`` -> data."""
    _, _, args = spec.partition(":")
    kwargs: dict = {}
    fields = {f.name: f.type for f in dataclasses.fields(SyntheticConfig)}
    for item in filter(None, args.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in fields:
            raise DataError(
                f"synthetic spec '{spec}': bad item '{item}'; known keys: {sorted(fields)}"
            )
        if key == "with_prompts":
            kwargs[key] = value.strip().lower() in ("1", "true", "yes")
        else:
            kwargs[key] = (float if "." in value or "e" in value else int)(value)
    return synthetic(**kwargs)


def read_synthetic(path: str, *, drop_incomplete: bool = False) -> RoutingData:
    """The ``synthetic`` entry of ``jaxroute.data.READERS`` (``synthetic[:k=v,...]``)."""
    del drop_incomplete  # the generator never leaves a model missing
    return synthetic_from_spec(str(path))
