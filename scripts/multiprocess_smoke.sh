#!/usr/bin/env bash
# CPU smoke run of jaxroute on JAX's multi-process runtime: N local processes (one CPU
# device each) on 127.0.0.1 train the tiny config as one data-parallel job.
#
#   scripts/multiprocess_smoke.sh [N] [WORKDIR] [train flags...]
#   COMPARE=1 scripts/multiprocess_smoke.sh 2 /tmp/mp   # also run one process and compare
#
# Process i gets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES=N and JAX_PROCESS_ID=i and
# runs python -m jaxroute.launch.train --config.devices.distributed=True; its log is
# WORKDIR.logs/process<i>.log. Only process 0 writes config.json, metrics.jsonl and the
# report; all N print the same headline. If one process fails the others are stopped.
# With COMPARE=1 the same config then runs as one process with N fake CPU devices
# (XLA_FLAGS) and as one process on one device, and report.json is compared with both.
# Extra flags go to every process (they win over the defaults here), e.g.
#   scripts/multiprocess_smoke.sh 2 /tmp/mp --config.run_routers=equirouter
# What the multi-process path does, and its measured overhead: docs/multiprocess.md.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2}
WORKDIR=${2:-workdirs/multiprocess_smoke}
shift $(( $# < 2 ? $# : 2 ))
PY=${PYTHON:-python}
LOGS="$WORKDIR.logs"
mkdir -p "$LOGS"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
FLAGS=(--config=jaxroute/configs/base.py:tiny "--workdir=$WORKDIR" "$@")

pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap stop_all EXIT INT TERM
start=$(date +%s.%N)
for ((i = 0; i < N; i++)); do
  JAX_PLATFORMS=cpu JAX_COORDINATOR_ADDRESS="127.0.0.1:$PORT" \
    JAX_COORDINATOR_BIND_ADDRESS="127.0.0.1:$PORT" JAX_NUM_PROCESSES="$N" JAX_PROCESS_ID="$i" \
    "$PY" -m jaxroute.launch.train "${FLAGS[@]}" --config.devices.distributed=True \
    >"$LOGS/process$i.log" 2>&1 &
  pids+=($!)
done
for ((done_ = 0; done_ < N; done_++)); do
  if ! wait -n; then
    echo "a process failed; stopping the others. Logs: $LOGS/process*.log" >&2
    tail -n 20 "$LOGS"/process*.log >&2
    exit 1
  fi
done
trap - EXIT
echo "$N processes finished in $(echo "$(date +%s.%N) - $start" | bc) s; headline (process 0):"
grep '^|' "$LOGS/process0.log"
for ((i = 1; i < N; i++)); do
  if ! diff -q <(grep '^|' "$LOGS/process0.log") <(grep '^|' "$LOGS/process$i.log") >/dev/null; then
    echo "process $i printed a different headline" >&2
    exit 1
  fi
done
echo "all $N processes printed the same headline; report: $WORKDIR/report.json"

if [[ "${COMPARE:-0}" == "1" ]]; then
  one_n="${WORKDIR}_one_process_${N}_devices"
  one_1="${WORKDIR}_one_process_1_device"
  XLA_FLAGS="--xla_force_host_platform_device_count=$N" JAX_PLATFORMS=cpu \
    "$PY" -m jaxroute.launch.train "${FLAGS[@]}" "--workdir=$one_n" >"$LOGS/one_process_${N}_devices.log" 2>&1
  JAX_PLATFORMS=cpu "$PY" -m jaxroute.launch.train "${FLAGS[@]}" "--workdir=$one_1" \
    >"$LOGS/one_process_1_device.log" 2>&1
  "$PY" - "$WORKDIR/report.json" "$one_n/report.json" "$one_1/report.json" <<'PYEOF'
import json, sys

def leaves(x, path=""):
    if isinstance(x, dict):
        for k in sorted(x):
            yield from leaves(x[k], f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, x

multi, *others = (json.load(open(p)) for p in sys.argv[1:])
for name, other in zip(["one process, N devices", "one process, 1 device"], others):
    if multi == other:
        print(f"report.json identical to the {name} run")
        continue
    a, b = dict(leaves(multi)), dict(leaves(other))
    num = [(abs(a[k] - b[k]), k) for k in a.keys() & b.keys()
           if isinstance(a[k], float) and isinstance(b[k], float)]
    worst = max(num) if num else (0.0, "")
    print(f"report.json differs from the {name} run: largest |difference| {worst[0]:.3g} "
          f"at {worst[1]}; keys only in one: {len(a.keys() ^ b.keys())}")
PYEOF
fi
