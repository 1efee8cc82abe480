#!/usr/bin/env bash
# GPU check of the DP engine.
#
#   scripts/gpu-check.sh build   # here (no GPU needed): builds the CUDA-enabled dp-bench
#                                # into target/gpu-bin
#   scripts/gpu-check.sh run     # on a machine with a GPU, from the repository root:
#                                # one seeded private step on CUDA vs CPU (≤ 1e-4), then
#                                # the CUDA dp-bench table
#
# The CUDA backend links without a CUDA toolkit (libcuda and NVRTC are loaded at run time);
# CUDARC_CUDA_VERSION=13000 matches the driver of the lent GPU machines (CUDA 13.0). The
# device tool carries target/gpu-bin (one binary, ~53 MB, under its 64 MiB limit) to the GPU
# machine, which reaches no
# package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/gpu-bin
case "${1:-}" in
  build)
    CUDARC_CUDA_VERSION=13000 cargo build --release -p examples --features cuda --bin dp-bench
    mkdir -p "$out"
    cp target/release/dp-bench "$out/"
    ls -la "$out"
    ;;
  run)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    "$out/dp-bench" --mode parity
    for batch in 256 1024; do
      "$out/dp-bench" --model fmnist-cnn --batch "$batch" --device cuda --json
    done
    ;;
  *)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
