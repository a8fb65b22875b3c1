r"""Routes new prompts with a trained workdir: one JSON line per prompt.

    python -m jaxroute.launch.route --workdir=workdirs/equirouter_synthetic \
        --budget=0.002 "What is the capital of France?" "Write a quicksort in Python."
    python -m jaxroute.launch.route --workdir=W --wtp=100 --prompts_file=prompts.jsonl
    python -m jaxroute.launch.route --workdir=W --target_share=0.2 "..."  # after calibrate

Each line: the prompt, the chosen model, its predicted cost, the rule and parameter used,
``over_budget`` (no model's predicted cost fits the budget: the cheapest is taken),
``truncated`` (the encoder read only the prompt's first tokens), and every model's
score and predicted cost. The prompts are embedded offline with the JAX sentence encoder.
A target (``--target_cost`` / ``--target_share`` / ``--target_quality``) needs a
workdir calibrated with ``python -m jaxroute.launch.calibrate``.
"""

import sys

from absl import app, flags

from jaxroute import serving
from jaxroute.launch import common  # noqa: F401  (shared flags)

_WORKDIR = common.WORKDIR
_ROUTER = flags.DEFINE_string("router", None, "Router name (default: the first trained one).")
_SEED_INDEX = flags.DEFINE_integer("seed_index", 0, "Which of the K seeds' routers to use.")
_BUDGET = flags.DEFINE_float("budget", None, "Budget rule: max predicted USD per prompt.")
_WTP = flags.DEFINE_float("wtp", None, "Willingness-to-pay rule: λ in s - λ·ĉ.")
_TARGET_COST = flags.DEFINE_float(
    "target_cost", None, "Calibrated target: mean USD per prompt (needs calibrate)."
)
_TARGET_SHARE = flags.DEFINE_float(
    "target_share", None, "Calibrated target: share of prompts sent to --model (needs calibrate)."
)
_TARGET_QUALITY = flags.DEFINE_float(
    "target_quality", None, "Calibrated target: mean quality at the lowest cost (needs calibrate)."
)
_RULE = flags.DEFINE_enum("rule", None, ["budget", "lambda"], "Rule for a target (default budget).")
_MODEL = flags.DEFINE_string("model", None, "--target_share's model (default: the strongest).")
_PROMPTS_FILE = flags.DEFINE_string(
    "prompts_file", None, "JSON lines: a string or an object with a 'prompt' field per line."
)


def main(argv):
    if not _WORKDIR.value:  # checked here: a global "required" would bind every app
        raise app.UsageError("--workdir is required")
    prompts = list(argv[1:])
    spec = {
        "budget": _BUDGET.value,
        "wtp": _WTP.value,
        "target_cost": _TARGET_COST.value,
        "target_share": _TARGET_SHARE.value,
        "target_quality": _TARGET_QUALITY.value,
        "rule": _RULE.value,
        "model": _MODEL.value,
    }
    try:
        if _PROMPTS_FILE.value:
            prompts += serving.read_prompts_file(_PROMPTS_FILE.value)
        if not prompts:
            raise ValueError("no prompts: pass them as arguments or with --prompts_file")
        serving.check_prompts(prompts)  # before loading anything
        serving.policy_fields(spec)
        router = serving.load_router(
            _WORKDIR.value, router=_ROUTER.value, seed_index=_SEED_INDEX.value
        )
        for line in router.route(prompts, **spec):
            common.print_json(line)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    common.run(main)
