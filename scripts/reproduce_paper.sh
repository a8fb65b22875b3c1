#!/usr/bin/env bash
# Reproduces the README's "Reproducing the paper" tables on RouterBench-format data, and
# with a second dataset (llmrouter9) its full protocol: the paper's routers at 20/80 and
# 80/20, and kNN against jaxroute's best router (launch/best_router.flags) at 20/80 and
# 80/20 on both datasets, every run over seeds 42-46 with both decision rules.
#   bash scripts/reproduce_paper.sh SUBSET_PATH [OUTPUT.md] [LLMROUTER9_PATH]
#   bash scripts/reproduce_paper.sh ../shared/data/routerbench_5shot_subset docs/paper_results.md \
#       ../shared/data/llmrouter9/llmrouter9_wide.csv
# Each run's per-seed results stay in workdirs/<run>/report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: scripts/reproduce_paper.sh SUBSET_PATH [OUTPUT.md] [LLMROUTER9_PATH]}
OUT=${2:-workdirs/paper_results.md}
L9=${3:-}
PY=${PY:-.venv/bin/python}
dirs=()
train() {  # train DATA FLAGFILE WORKDIR [more flags]
  local data=$1 flags=$2 workdir=$3
  shift 3
  echo "== $flags on $data -> $workdir" >&2
  $PY -m jaxroute.launch.train --flagfile="launch/$flags.flags" --data_path="$data" \
    --workdir="$workdir" "$@" >&2
  dirs+=("$workdir")
}
default_workdir() { sed -n 's/^--workdir=//p' "jaxroute/launch/flags/$1.flags"; }
for run in paper_routerbench_20_80 paper_routerbench_80_20 paper_routerbench_80_20_question \
    paper_routerbench_ood_arc-challenge paper_routerbench_ood_winogrande \
    paper_routerbench_ood_mbpp loss_ablation_routerbench; do
  train "$DATA" "$run" "$(default_workdir "$run")"
done
# kNN against jaxroute's best router (issue 17): 80/20 on the subset ...
train "$DATA" best_router workdirs/best_router_subset_80_20 --config.data.train_fraction=0.8
if [[ -n "$L9" ]]; then
  # ... and the llmrouter9 protocol: the paper's routers and best vs kNN, 20/80 and 80/20.
  train "$L9" paper_routerbench_20_80 workdirs/llmrouter9_paper_20_80
  train "$L9" paper_routerbench_80_20 workdirs/llmrouter9_paper_80_20
  train "$L9" best_router workdirs/best_router_llmrouter9_20_80
  train "$L9" best_router workdirs/best_router_llmrouter9_80_20 --config.data.train_fraction=0.8
fi
mkdir -p "$(dirname "$OUT")"
{ echo "Run on $(date -u +%Y-%m-%d) with: bash scripts/reproduce_paper.sh $*"; echo
  $PY -m jaxroute.report.compare "${dirs[@]}"; } > "$OUT"
echo "tables: $OUT" >&2
