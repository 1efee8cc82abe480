#!/usr/bin/env bash
# The main job: a real private training run on Fashion-MNIST (Tramèr & Boneh's CNN, 12 epochs,
# σ calibrated to ε = 3 at δ = 1e-5) that prints the test accuracy and the (ε, δ) it spent.
# Installs Debian's dataset-fashion-mnist package if the data is missing. Extra arguments go to
# dp-train (e.g. --preset fmnist-cnn-eps3 for the full 40-epoch run).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=/usr/share/datasets/fashion-mnist
if [[ ! -e "$DATA/train-images-idx3-ubyte.gz" && ! -e "$DATA/train-images-idx3-ubyte" ]]; then
    echo "Fashion-MNIST is missing from $DATA: installing Debian's dataset-fashion-mnist" >&2
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y dataset-fashion-mnist >&2 || { apt-get update >&2 && apt-get install -y dataset-fashion-mnist >&2; }
    elif command -v sudo >/dev/null; then
        sudo apt-get install -y dataset-fashion-mnist >&2 || { sudo apt-get update >&2 && sudo apt-get install -y dataset-fashion-mnist >&2; }
    else
        echo "error: cannot install dataset-fashion-mnist (not root, no sudo); install it or pass --data-dir" >&2
        exit 2
    fi
fi

preset=fmnist-cnn-quick
given=""
prev=""
for arg in "$@"; do
    if [[ $prev == --preset ]]; then preset=$arg; given=1; fi
    prev=$arg
done
out="runs/${preset}-$(date -u +%Y%m%dT%H%M%SZ)"

# Say what happens before each long part: the first build takes minutes and prints little.
say() { echo "main.sh: $*" >&2; }
bin=target/release/dp-train
started=$SECONDS
if [[ -x $bin ]]; then
    say "checking that $bin is up to date (seconds, unless the sources changed)"
else
    say "building dp-train and its dependencies (release build, about 4-7 minutes the first"
    say "time on 2 cores; cargo downloads crates first if they are missing, and shows its progress)"
fi
cargo build --release -p examples --bin dp-train
if (( SECONDS - started > 5 )); then say "built in $((SECONDS - started)) s"; fi
say "training $preset (privately: Poisson sampling, per-example clipping, Gaussian noise); the"
say "run directory is $out; progress below, the test accuracy and the (ε, δ) spent at the end"
if [[ -n $given ]]; then
    exec "$bin" --out "$out" "$@"
fi
exec "$bin" --preset "$preset" --out "$out" "$@"
