#!/usr/bin/env bash
# Side by side on this machine: seconds per training epoch (evaluation excluded) of dp-train and
# of Opacus (../shared/peers/opacus_fmnist.py) on the fmnist-cnn-eps3 recipe, run one after the
# other in the same session, σ calibrated by RDP on both sides (as Opacus does). Needs the dataset (scripts/main.sh installs it) and
# `bash ../shared/peers/setup.sh` for .venv-peers.
#   scripts/fmnist-vs-opacus.sh [EPOCHS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-3}
work=$(mktemp -d)
cargo build --release -q -p examples --bin dp-train
./target/release/dp-train --preset fmnist-cnn-eps3 --epochs "$epochs" --accountant rdp --out "$work/ours" --json --no-progress > "$work/ours.json"
.venv-peers/bin/python ../shared/peers/opacus_fmnist.py --epochs "$epochs" --bench-reps 3 --out "$work/opacus.json" > /dev/null
python3 - "$work" <<'PY'
import json, sys, os
work = sys.argv[1]
ours = json.load(open(os.path.join(work, "ours.json")))
opacus = json.load(open(os.path.join(work, "opacus.json")))
o = ours["epoch_train_s"]
p = opacus["median_epoch_train_time_s"]
print(json.dumps({"epochs": len(opacus["epochs"]), "ours_epoch_train_s": round(o, 2),
                  "opacus_epoch_train_s": round(p, 2), "ratio": round(o / p, 3)}))
PY
rm -rf "$work"
