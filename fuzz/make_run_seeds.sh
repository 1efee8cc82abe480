#!/usr/bin/env bash
# Writes the seeds of the run-file targets (checkpoint, journal, run_record) from a real
# dp-train run: 4 steps of the Fashion-MNIST CNN on a generated 64-image set, paused after 2.
# Rerun after changing any of the three formats: bash fuzz/make_run_seeds.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/data" <<'PY'
import os, struct, sys
out = sys.argv[1]
os.makedirs(out)
def idx(sizes, payload):
    return bytes([0, 0, 8, len(sizes)]) + b"".join(struct.pack(">I", s) for s in sizes) + payload
for prefix, n in [("train", 64), ("t10k", 16)]:
    pixels = bytes((i * 37 + n) % 256 for i in range(n * 28 * 28))
    with open(f"{out}/{prefix}-images-idx3-ubyte", "wb") as f:
        f.write(idx([n, 28, 28], pixels))
    with open(f"{out}/{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write(idx([n], bytes(i % 10 for i in range(n))))
PY
cargo run -q --release -p examples --bin dp-train -- --preset fmnist-cnn-quick \
    --data-dir "$work/data" --out "$work/run" --steps 4 --batch-size 8 --eval-every 2 \
    --pause-after 2 --no-progress >/dev/null
for target in checkpoint journal run_record; do mkdir -p "fuzz/seeds/$target"; done
# The checkpoint target reads its first byte as a mode (even: as is, odd: CRC recomputed).
{ printf '\x00'; cat "$work/run/checkpoint.dpck"; } > fuzz/seeds/checkpoint/as-is
{ printf '\x01'; cat "$work/run/checkpoint.dpck"; } > fuzz/seeds/checkpoint/crc-fixed
cp "$work/run/privacy-journal.json" fuzz/seeds/journal/paused-after-2
cp "$work/run/run.json" fuzz/seeds/run_record/fmnist-cnn-quick
ls -l fuzz/seeds/checkpoint fuzz/seeds/journal fuzz/seeds/run_record
