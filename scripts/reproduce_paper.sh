#!/usr/bin/env bash
# Reproduces the tables of docs/paper_results.md on RouterBench-format data, and with a
# second dataset (llmrouter9) its full protocol: the paper's routers at 20/80 and 80/20,
# and kNN against jaxroute's best router (launch/best_router.flags) at 20/80 and 80/20 on
# both datasets, every run over seeds 42-46 with both decision rules.
#
#   bash scripts/reproduce_paper.sh SUBSET_PATH [OUTPUT.md] [LLMROUTER9_PATH]
#
# SUBSET_PATH: a RouterBench-format file or folder (the docs use the RouterBench 5-shot
# subset's CSV folder); LLMROUTER9_PATH: the llmrouter9 wide table (llmrouter9_wide.csv).
# Both are read at run time and never copied into the repository (docs/method.md §6).
# OUTPUT.md defaults to workdirs/paper_results.md; each run's per-seed results stay in
# workdirs/<run>/report.json. PY selects the interpreter (default .venv/bin/python).
set -euo pipefail
usage() {
  echo "usage: bash scripts/reproduce_paper.sh SUBSET_PATH [OUTPUT.md] [LLMROUTER9_PATH]" >&2
  exit 2
}
[[ $# -ge 1 && $# -le 3 && -n "$1" ]] || usage
abspath() {  # a path given relative to the caller's directory, made absolute
  [[ -e "$1" ]] || { echo "error: $1: no such file or folder" >&2; exit 2; }
  echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
}
DATA=$(abspath "$1")
L9=""
[[ -n "${3:-}" ]] && L9=$(abspath "$3")
if [[ -n "${2:-}" ]]; then
  mkdir -p "$(dirname "$2")"
  OUT="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
else
  OUT=""
fi
cd "$(dirname "$0")/.."
OUT=${OUT:-workdirs/paper_results.md}
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
# The header names the data by folder or file name only: no path of this machine in the docs.
data_names="SUBSET = $(basename "$DATA")${L9:+, LLMROUTER9 = $(basename "$L9")}"
{ echo "Run on $(date -u +%Y-%m-%d) with: bash scripts/reproduce_paper.sh SUBSET OUTPUT.md${L9:+ LLMROUTER9} ($data_names)"; echo
  $PY -m jaxroute.report.compare "${dirs[@]}"; } > "$OUT"
echo "tables: $OUT" >&2
