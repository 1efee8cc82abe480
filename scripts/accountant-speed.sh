#!/usr/bin/env bash
# Times dp_accounting 0.6 (../shared/peers/accountant_speed.py) and this crate on the same
# accountant queries, one after the other in this session, and prints a table of ratios.
# Needs the peers' venv: `bash ../shared/peers/setup.sh` (run from the repository root).
# Usage: scripts/accountant-speed.sh [reps]
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"
peer_script="${PEER_SCRIPT:-../shared/peers/accountant_speed.py}"
python="${PEER_PYTHON:-.venv-peers/bin/python}"
out="$(mktemp -d)"
cargo build --release -q -p dp-accountant --example accountant_speed
./target/release/examples/accountant_speed --reps "$reps" > "$out/ours.jsonl"
"$python" "$peer_script" --reps "$reps" > "$out/peer.jsonl"
python3 scripts/speed_table.py "$out/ours.jsonl" "$out/peer.jsonl"
