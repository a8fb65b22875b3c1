#!/usr/bin/env bash
# Reproduces the README's "Reproducing the paper" tables on RouterBench-format data.
#   bash scripts/reproduce_paper.sh ../shared/data/routerbench_5shot_subset [results.md]
# Each run's per-seed results stay in workdirs/<run>/report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: scripts/reproduce_paper.sh DATA_PATH [OUTPUT.md]}
OUT=${2:-workdirs/paper_results.md}
PY=${PY:-.venv/bin/python}
runs=(paper_routerbench_20_80 paper_routerbench_80_20 paper_routerbench_80_20_question
      paper_routerbench_ood_arc-challenge paper_routerbench_ood_winogrande
      paper_routerbench_ood_mbpp loss_ablation_routerbench)
dirs=()
for run in "${runs[@]}"; do
  echo "== $run" >&2
  $PY -m jaxroute.launch.train --flagfile="launch/$run.flags" --data_path="$DATA" >&2
  dirs+=("$(sed -n 's/^--workdir=//p' "jaxroute/launch/flags/$run.flags")")
done
mkdir -p "$(dirname "$OUT")"
{ echo "Run on $(date -u +%Y-%m-%d) with: bash scripts/reproduce_paper.sh $DATA"; echo
  $PY -m jaxroute.report.compare "${dirs[@]}"; } > "$OUT"
echo "tables: $OUT" >&2
