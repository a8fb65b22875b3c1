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

``--router`` may name any router of the run, trained (from its checkpoints) or fitted
(kNN, ``best``: from the state the run stored in ``W/fitted``); without it, the run's
headline router: the first of its routers, the first row of its report.
"""

import sys

from absl import app, flags

from jaxroute import serving
from jaxroute.launch import common, policy_flags

_WORKDIR = common.WORKDIR
_POLICY = policy_flags.define_policy_flags()
_ROUTER = policy_flags.define_router_flags()
_PROMPTS_FILE = flags.DEFINE_string(
    "prompts_file", None, "JSON lines: a string or an object with a 'prompt' field per line."
)


def main(argv):
    if not _WORKDIR.value:  # checked here: a global "required" would bind every app
        raise app.UsageError("--workdir is required")
    prompts = list(argv[1:])
    spec = _POLICY.spec()
    try:
        if _PROMPTS_FILE.value:
            prompts += serving.read_prompts_file(_PROMPTS_FILE.value)
        if not prompts:
            raise ValueError("no prompts: pass them as arguments or with --prompts_file")
        serving.check_prompts(prompts)  # before loading anything
        serving.policy_fields(spec)
        router = serving.load_router(
            _WORKDIR.value, router=_ROUTER.router.value, seed_index=_ROUTER.seed_index.value
        )
        for line in router.route(prompts, **spec):
            common.print_json(line)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    common.run(main)
