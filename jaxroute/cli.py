"""``jaxroute APP [flags]``: one console command for every app.

One command with subcommands rather than a script per app: one name on the PATH,
``jaxroute --help`` lists the apps, and each subcommand imports only its own app
module (and the shared runner, :mod:`jaxroute.launch.app`), so absl's global flags hold
that app's flags and nothing else (the same as ``python -m jaxroute.launch.APP``, which
keeps working). Both are imported by name once an app is chosen: they bring in JAX
(about 2.5 s), which ``jaxroute --help`` and a mistyped app name never need.
"""

from __future__ import annotations

import importlib
import sys

# App name -> one line (the module is jaxroute.launch.<name>).
APPS = {
    "train": "train every configured router over K seeds, sweep both rules, write the report",
    "evaluate": "rebuild a workdir's report from its checkpoints (optionally on other data)",
    "route": "route new prompts with a trained workdir",
    "calibrate": "calibrate a workdir's decision rule to a cost/share/quality target",
    "serve": "serve a trained router over HTTP",
    "inspect_data": "validate a dataset and summarise it",
    "embed": "embed a dataset's prompts with the JAX MiniLM encoder",
    "diagnose": "why a router collapses: ties, noise injection, feature diversity",
    "benchmark": "speed figures against baselines measured in the same run",
}


def usage() -> str:
    width = max(map(len, APPS))
    lines = ["usage: jaxroute APP [flags]    (jaxroute APP --help: the app's flags)", "", "apps:"]
    lines += [f"  {name.ljust(width)}  {doc}" for name, doc in APPS.items()]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "help"):
        try:
            print(usage())
        except BrokenPipeError:  # `jaxroute --help | head`
            pass
        sys.exit(0)
    name = sys.argv[1]
    if name not in APPS:
        print(f"error: unknown app '{name}'\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [f"jaxroute {name}", *sys.argv[2:]]
    runner = importlib.import_module("jaxroute.launch.app")
    runner.run(importlib.import_module(f"jaxroute.launch.{name}").main)


if __name__ == "__main__":
    main()
