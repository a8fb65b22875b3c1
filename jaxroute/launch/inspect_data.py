r"""Loads a routing dataset, validates it and prints its summary.

    python -m jaxroute.launch.inspect_data --data_path=synthetic
    python -m jaxroute.launch.inspect_data --json --data_path=PATH   # one JSON object

By default readable tables (per model: mean quality and cost; per task: prompts; the
oracle and the best single model); ``--json`` prints one JSON object instead: n_prompts,
n_models, models, tasks, mean_quality, mean_cost, top2_tie_share, oracle, best_single.
Bad input exits 2 with the validation message (file, column, sample id).
"""

from absl import app

from jaxroute.launch import common
from jaxroute.routing import dataset_summary

_JSON = common.define_json()


def readable(summary) -> str:
    """The summary as text: a header, the per-model table, the per-task table."""
    s = summary
    best, oracle = s["best_single"], s["oracle"]
    lines = [
        f"{s['n_prompts']} prompts, {s['n_models']} models, {len(s['tasks'])} tasks",
        f"top-2 tie share {s['top2_tie_share']:.3f} (prompts whose two best models tie)",
        f"best single model: {best['model']} (quality {best['quality']:.4f}, "
        f"cost {best['cost']:.4g} USD)",
        f"oracle: quality {oracle['quality']:.4f}, cost {oracle['cost']:.4g} USD, "
        f"sends {oracle['strong_model_share']:.3f} of prompts to {s['strong_model']}",
        "",
    ]
    rows = sorted(
        ((m, s["mean_quality"][m], s["mean_cost"][m]) for m in s["models"]), key=lambda r: r[2]
    )
    lines.append(common.table(rows, ["model", "mean quality", "mean cost (USD)"]))
    if s["tasks"]:
        lines += ["", common.table(sorted(s["tasks"].items()), ["task", "prompts"])]
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    data = common.load_data_or_exit()
    summary = dataset_summary(data.quality, data.cost, data.models, data.tasks)
    if _JSON.value:
        common.print_json(summary)
    else:
        print(readable(summary))


if __name__ == "__main__":
    common.run(main)
