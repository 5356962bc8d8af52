#!/bin/bash
# The determinism gate of issue 8: the restart test and the CI-sized chaos suite, N times in a
# row (default 20), each run under its own --basetemp so every worker log is kept, with the
# stall dump armed (sitecustomize.py here) and watch.sh sending it to a stuck worker.
#
#   tests/debug/gate.sh [RUNS] [ROOT]      # ROOT default /tmp/gate-<commit>
#   GATE_K=kafka tests/debug/gate.sh 10    # one broker's half: a pytest -k expression
#   (kafka: "kafka or cluster"; tansu: "tansu or memory or durable")
#
# Prints one line per run to ROOT/summary.txt and stops at the first failure. Extra
# environment (e.g. STREAMPROC_DIRECT_DELIVERY=0 for Faust's race) reaches the workers. ~5 min a run on 2 cores.
set -u
cd "$(dirname "$0")/../.."
RUNS=${1:-20}
COMMIT=$(git rev-parse --short HEAD)
ROOT=${2:-/tmp/gate-$COMMIT}
mkdir -p "$ROOT/gate"
ROOT="$ROOT" tests/debug/watch.sh gate &
WATCH=$!
trap 'kill $WATCH 2>/dev/null' EXIT
for i in $(seq 1 "$RUNS"); do
  started=$(date +%s)
  PYTHONPATH="$PWD/tests/debug${PYTHONPATH:+:$PYTHONPATH}" STREAMPROC_DBG_DUMP=1 \
    .venv/bin/pytest -q -p no:cacheprovider tests/integration/test_worker_restart.py tests/chaos \
    -m "long or not long" -rP ${GATE_K:+-k "$GATE_K"} --basetemp="$ROOT/gate/r$i" > "$ROOT/out$i.txt" 2>&1
  rc=$?
  echo "$COMMIT run $i rc=$rc $(( $(date +%s) - started ))s $(tail -1 "$ROOT/out$i.txt")" | tee -a "$ROOT/summary.txt"
  grep -o "^chaos [a-z-]* seed=.*" "$ROOT/out$i.txt" >> "$ROOT/summary.txt"
  if [ $rc -ne 0 ]; then
    echo "failed: logs under $ROOT/gate/r$i" | tee -a "$ROOT/summary.txt"
    exit 1
  fi
done
grep -l "put back\|never handled" -r "$ROOT/gate" --include='worker-*.log' | sed 's/^/worth a look: /' | tee -a "$ROOT/summary.txt"
echo "$RUNS of $RUNS in a row on $COMMIT" | tee -a "$ROOT/summary.txt"
