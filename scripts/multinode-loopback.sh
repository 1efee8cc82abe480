#!/usr/bin/env bash
# Two dp-train processes and `dp-train orchestrator` on 127.0.0.1 train STEPS steps of the
# fmnist-cnn-quick preset on the real Fashion-MNIST, seeded (so both runs draw the same batches
# and noise), next to the same run in one process; prints both results and whether they agree.
# Bounded: every process is killed after LIMIT seconds. The seed is for this comparison only.
#
#   bash scripts/multinode-loopback.sh [STEPS] [LIMIT]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-40}
LIMIT=${2:-900}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
PORT=${PORT:-47390}

cargo build --release -q -p examples --bin dp-train
T=target/release/dp-train
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
RUN=(--preset fmnist-cnn-quick --data-dir "$DATA" --steps "$STEPS" --seed 3 --no-progress --json)
GROUP=(--nodes 2 --orchestrator "127.0.0.1:$PORT" --secret-file "$WORK/job.secret")

echo "== one process" >&2
start=$(date +%s%3N)
timeout "$LIMIT" "$T" "${RUN[@]}" --out "$WORK/one" > "$WORK/one.json" 2> "$WORK/one.err"
one_s=$(( $(date +%s%3N) - start ))

echo "== orchestrator and two processes on 127.0.0.1:$PORT" >&2
start=$(date +%s%3N)
timeout "$LIMIT" "$T" orchestrator --listen "127.0.0.1:$PORT" --nodes 2 \
    --secret-file "$WORK/job.secret" --admission-timeout 120 2> "$WORK/orchestrator.log" &
orchestrator=$!
sleep 0.5
timeout "$LIMIT" "$T" --node-rank 1 "${GROUP[@]}" --data-dir "$DATA" \
    > "$WORK/peer1.out" 2> "$WORK/peer1.err" &
peer1=$!
timeout "$LIMIT" "$T" "${RUN[@]}" --out "$WORK/group" --node-rank 0 "${GROUP[@]}" \
    > "$WORK/group.json" 2> "$WORK/peer0.err"
wait "$peer1"
wait "$orchestrator"
group_s=$(( $(date +%s%3N) - start ))

sed 's/^/orchestrator: /' "$WORK/orchestrator.log"
sed 's/^/peer 1: /' "$WORK/peer1.out"
grep '^step' "$WORK/peer0.err" | tail -1 | sed 's/^/peer 0: /'
field() { grep -o "\"$2\":[^,}]*" "$1" | head -1 | cut -d: -f2; }
for f in test_accuracy epsilon epsilon_rdp epsilon_pld steps peers; do
    printf '%-14s one process %-22s two processes %s\n' "$f" "$(field "$WORK/one.json" $f)" "$(field "$WORK/group.json" $f)"
done
printf '%-14s one process %-22s two processes %s\n' wall_ms "$one_s" "$group_s"
if [[ $(field "$WORK/one.json" test_accuracy) == $(field "$WORK/group.json" test_accuracy) &&
      $(field "$WORK/one.json" epsilon) == $(field "$WORK/group.json" epsilon) ]]; then
    echo "the two-process run matches the one-process run"
else
    echo "MISMATCH between the two-process and the one-process run" >&2
    exit 1
fi
