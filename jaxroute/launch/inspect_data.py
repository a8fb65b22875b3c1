r"""Loads a routing dataset, validates it and prints its summary as one JSON line.

    python -m jaxroute.launch.inspect_data --data_path=synthetic
    python -m jaxroute.launch.inspect_data --data_path=../shared/data/routerbench_5shot_subset

The last line of stdout is a JSON object: n_prompts, n_models, models, tasks,
mean_quality, mean_cost, top2_tie_share, oracle, best_single. Bad input exits non-zero
with the validation message (file, column, sample id).
"""

from absl import app

from jaxroute.launch import common


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jaxroute.routing import dataset_summary

    data = common.load_data_or_exit()
    summary = dataset_summary(data.quality, data.cost, data.models, data.tasks)
    common.print_json(summary)


if __name__ == "__main__":
    common.run(main)
