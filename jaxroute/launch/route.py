r"""Routes new prompts with a trained workdir: one JSON line per prompt.

    python -m jaxroute.launch.route --workdir=workdirs/equirouter_synthetic \
        --budget=0.002 "What is the capital of France?" "Write a quicksort in Python."
    python -m jaxroute.launch.route --workdir=W --wtp=100 --prompts_file=prompts.jsonl

Each line: the prompt, the chosen model, its predicted cost and every model's score
and predicted cost. The prompts are embedded offline with the JAX sentence encoder.
"""

import json
import sys

from absl import app, flags

from jaxroute import serving
from jaxroute.launch import common  # noqa: F401  (shared flags)

_WORKDIR = common.WORKDIR
_ROUTER = flags.DEFINE_string("router", None, "Router name (default: the first trained one).")
_SEED_INDEX = flags.DEFINE_integer("seed_index", 0, "Which of the K seeds' routers to use.")
_BUDGET = flags.DEFINE_float("budget", None, "Budget rule: max predicted USD per prompt.")
_WTP = flags.DEFINE_float("wtp", None, "Willingness-to-pay rule: λ in s - λ·ĉ.")
_PROMPTS_FILE = flags.DEFINE_string(
    "prompts_file", None, "JSON lines: a string or an object with a 'prompt' field per line."
)


def main(argv):
    if not _WORKDIR.value:  # checked here: a global "required" would bind every app
        raise app.UsageError("--workdir is required")
    prompts = list(argv[1:])
    try:
        if _PROMPTS_FILE.value:
            prompts += serving.read_prompts_file(_PROMPTS_FILE.value)
        if not prompts:
            raise ValueError("no prompts: pass them as arguments or with --prompts_file")
        if (_BUDGET.value is None) == (_WTP.value is None):
            raise ValueError("give exactly one of --budget=USD and --wtp=LAMBDA")
        router = serving.load_router(
            _WORKDIR.value, router=_ROUTER.value, seed_index=_SEED_INDEX.value
        )
        for line in router.route(prompts, budget=_BUDGET.value, wtp=_WTP.value):
            print(json.dumps(line))
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
