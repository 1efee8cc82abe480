#!/usr/bin/env bash
# GPU check of the DP engine, sized for 10 minutes of one GPU.
#
#   scripts/gpu-check.sh build   # here (no GPU needed): the CUDA dp-bench (stripped) and
#                                # Opacus 1.6's wheel into target/gpu-bin (≤ 64 MiB)
#   scripts/gpu-check.sh run     # on the GPU machine, from the repository root (carry
#                                # target/gpu-bin); prints progress on stderr and one table
#
# `run` prints, in order:
#   1. correctness on CUDA: the fast per-example path against the batch-of-one oracle on the
#      device, for every layer type, WRN-16-4 at a small batch, NFNet-tiny, K = 2 and
#      per-layer clipping; errors relative to each norm and to each clipped sum's norm
#      (`dp-bench --mode check`);
#   2. speed on CUDA: non-private vs private step, interleaved medians, for fmnist-cnn at
#      batch 1024, wrn16-4 at 3×32×32 batch 256 with K = 1 and K = 4 views, nfnet-f0 at
#      224×224 batch 32, with the peak device memory nvidia-smi saw during each run;
#   3. Opacus 1.6 on the same GPU (non-private, per-example hooks, ghost clipping) for the CNN
#      and WRN-16-4 (scripts/opacus_gpu_step.py; the wheel is installed with --no-deps, since
#      the machine reaches no package registry; its image has PyTorch).
# DEVICE=cpu SMOKE=1 scripts/gpu-check.sh run   runs the same sequence at small sizes on
# another device, to try the script without a GPU (Opacus then runs on the CPU if torch and
# opacus are importable, else is skipped); DEVICE=wgpu needs FEATURES=cuda,wgpu at build time.
# GPU_BIN=DIR takes dp-bench from DIR instead of target/gpu-bin.
#
# The CUDA backend links without a CUDA toolkit (libcuda and NVRTC are loaded at run time);
# CUDARC_CUDA_VERSION=13000 matches the driver of the lent GPU machines (CUDA 13.0).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${GPU_BIN:-target/gpu-bin}
device=${DEVICE:-cuda}
smoke=${SMOKE:-}
case "${1:-}" in
  build)
    CUDARC_CUDA_VERSION=13000 cargo build --release -p examples --features "${FEATURES:-cuda}" --bin dp-bench
    mkdir -p "$out"
    cp target/release/dp-bench "$out/"
    strip "$out/dp-bench"
    if ! ls "$out"/opacus-1.6.0-*.whl >/dev/null 2>&1; then
      python3 -m pip download -q --no-deps opacus==1.6.0 -d "$out"
    fi
    ls -la "$out"
    du -sh "$out"
    ;;
  run)
    start=$(date +%s)
    log=$(mktemp -d)
    step() { echo "[gpu-check $(( $(date +%s) - start ))s] $*" >&2; }
    if [[ $device == cuda ]]; then
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    fi
    # Peak device memory (MiB) nvidia-smi sees while "$@" runs; "-" without nvidia-smi.
    with_peak() {
      local peakfile=$log/peak
      echo 0 >"$peakfile"
      if [[ $device == cuda ]] && command -v nvidia-smi >/dev/null; then
        ( while :; do
            used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
            [[ $used -gt $(cat "$peakfile") ]] && echo "$used" >"$peakfile"
            sleep 0.2
          done ) &
        local sampler=$!
        "$@"
        kill $sampler 2>/dev/null || true
        wait $sampler 2>/dev/null || true
      else
        "$@"
        echo - >"$peakfile"
      fi
    }
    step "1/3 correctness: fast path vs batch-of-one oracle on $device"
    check_ok=1
    "$out/dp-bench" --mode check --device "$device" >"$log/check.md" || check_ok=0
    step "2/3 speed: non-private vs private step on $device"
    if [[ -n $smoke ]]; then
      runs=("fmnist-cnn 32 1" "wrn16-4 4 1" "wrn16-4 4 2" "nfnet-f0-tiny 4 1")
      iters=(--iters 2 --warmup 1 --naive-iters 0)
    else
      runs=("fmnist-cnn 1024 1" "wrn16-4 256 1" "wrn16-4 256 4" "nfnet-f0 32 1")
      iters=(--iters 10 --warmup 3 --naive-iters 0)
    fi
    : >"$log/speed.jsonl"
    for r in "${runs[@]}"; do
      read -r model batch views <<<"$r"
      step "   $model batch $batch K=$views"
      with_peak "$out/dp-bench" --model "$model" --batch "$batch" --views "$views" \
        --device "$device" --json "${iters[@]}" >"$log/one.json" || echo '{}' >"$log/one.json"
      python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read() or "{}"); d["peak_device_mib"]=sys.argv[2]; d.setdefault("model", sys.argv[3]); print(json.dumps(d))' \
        "$log/one.json" "$(cat "$log/peak")" "$model" >>"$log/speed.jsonl"
    done
    step "3/3 Opacus 1.6 on the same device"
    : >"$log/opacus.jsonl"
    site=/tmp/gpu-check-site
    if ls "$out"/opacus-1.6.0-*.whl >/dev/null 2>&1; then
      python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$out"/opacus-1.6.0-*.whl >&2 || true
    fi
    if PYTHONPATH=$site python3 -c 'import opacus, torch' 2>/dev/null; then
      if [[ -n $smoke ]]; then peers=("fmnist-cnn 32" "wrn16-4 4"); else peers=("fmnist-cnn 1024" "wrn16-4 256"); fi
      for p in "${peers[@]}"; do
        read -r model batch <<<"$p"
        step "   opacus $model batch $batch"
        PYTHONPATH=$site python3 scripts/opacus_gpu_step.py --model "$model" --batch "$batch" \
          ${smoke:+--iters 2 --warmup 1} >>"$log/opacus.jsonl" || true
      done
    else
      step "   skipped: torch or opacus not importable"
    fi
    step "done; the table:"
    cat "$log/check.md"
    echo
    python3 - "$log/speed.jsonl" "$log/opacus.jsonl" "$device" <<'PY'
import json, sys
speed = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peer = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
dev = sys.argv[3]
print(f"| model ({dev}) | batch | K | non-private ms | private ms | private throughput / non-private | host reads per private step | peak device MiB |")
print("|---|---|---|---|---|---|---|---|")
for d in speed:
    if "private_ms" not in d:
        print(f"| {d.get('model')} | – | – | failed | failed | – | – | {d.get('peak_device_mib')} |")
        continue
    print(f"| {d['model']} | {d['batch']} | {d['views']} | {d['nonprivate_ms']:.2f} | {d['private_ms']:.2f} | "
          f"{d['nonprivate_ms'] / d['private_ms']:.2f} | {d['host_reads_per_private_step']} | {d['peak_device_mib']} |")
if peer:
    print()
    print(f"| model | batch | Opacus mode | Opacus ms | ours private ms | our private throughput / Opacus's | Opacus peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for p in peer:
        ours = next((d for d in speed if d.get("model") == p["model"] and d.get("views") == 1 and "private_ms" in d), None)
        if ours and p["mode"] != "nonprivate":
            mine = ours["private_ms"] * p["batch"] / ours["batch"]
            ratio = f"{p['step_ms'] / mine:.2f}"
            mine = f"{mine:.2f}"
        else:
            mine, ratio = "–", "–"
        print(f"| {p['model']} | {p['batch']} | {p['mode']} | {p['step_ms']:.2f} | {mine} | {ratio} | {p['peak_device_mib']} |")
PY
    step "finished in $(( $(date +%s) - start )) s"
    rm -rf "$log"
    [[ $check_ok == 1 ]]
    ;;
  *)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
