#!/usr/bin/env bash
# Fuzzes dp-burn's file readers with cargo-fuzz (libFuzzer); not run in CI.
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#
# Runs each target (default: every fuzz/fuzz_targets/*.rs) for SECONDS, then prints per target
# the executions run (libFuzzer's final stat::number_of_executed_units) and whether it crashed;
# exits 1 if any target crashed. A crashing input is saved in fuzz/artifacts/TARGET/; replay it
# (it runs once) with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s address -a -O --codegen-units 16 TARGET INPUT
# then fix the reader and keep the input as a regression test in its crate (fuzz/README.md).
#
# Stable Rust only: RUSTC_BOOTSTRAP=1 lets stable rustc accept the -Z flags cargo-fuzz passes
# (-Zsanitizer=address; the ASan runtime ships with the stable std). FUZZ_SANITIZER=none
# builds without ASan (faster, catches only panics, aborts and the RSS limit).
# Build: release, debug assertions and overflow checks on (integer overflow is a crash),
# 16 codegen units (the fuzz build instruments burn too; one unit makes it very slow).
# libFuzzer: -rss_limit_mb=2048 (exceeding it is a crash: no unbounded allocation),
# -timeout=30 s per input, and -max_len from the seeds (fuzz/seeds/TARGET, committed,
# written by fuzz/make_seeds.py); new inputs go to fuzz/corpus/TARGET (not committed).
#
# Adding a target for a reader `fn parse_xxx(bytes: &[u8], source: &Path) -> Result<T>`:
#   1. fuzz/fuzz_targets/xxx.rs: `#![no_main]`, `libfuzzer_sys::fuzz_target!(|data: &[u8]| {
#      if let Ok(v) = parse_xxx(data, Path::new("fuzz-input")) { /* assert sizes agree */ } });`
#   2. a [[bin]] entry `name = "xxx"`, `path = "fuzz_targets/xxx.rs"` in fuzz/Cargo.toml (and a
#      dependency there if the reader's crate is new to it);
#   3. a few small valid inputs in fuzz/seeds/xxx/ (add them to fuzz/make_seeds.py);
#   4. `scripts/fuzz.sh 60 xxx` picks it up (and so does a run with no TARGET).
set -euo pipefail

usage="usage: scripts/fuzz.sh SECONDS [TARGET...]"
seconds=${1:?$usage}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "$usage (SECONDS must be a whole number)" >&2; exit 2; }
shift
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=()
    for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
for t in "${targets[@]}"; do
    [[ -f fuzz/fuzz_targets/$t.rs ]] || { echo "no fuzz target $t (fuzz/fuzz_targets/$t.rs)" >&2; exit 2; }
done

# Tools: a C++ compiler (libfuzzer-sys builds libFuzzer) and cargo-fuzz.
if ! command -v c++ >/dev/null; then
    sudo=$([[ $(id -u) -eq 0 ]] || echo sudo)
    $sudo apt-get update -q && $sudo apt-get install -y -q g++
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi

export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}
flags=(-s "$sanitizer" -a -O --codegen-units 16)
# Leak detection off: burn keeps allocations alive in process-wide caches.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}

for t in "${targets[@]}"; do
    echo "== building $t"
    cargo fuzz build "${flags[@]}" "$t"
done

status=0
summary=()
mkdir -p fuzz/logs
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
    log=fuzz/logs/$t.log
    echo "== $t: ${seconds} s"
    set +e
    cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=30 \
        >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || true)
    if [[ $rc -eq 0 ]]; then
        result="no crash"
    else
        status=1
        artifact=$(grep -o 'Test unit written to [^ ]*' "$log" | tail -n 1 | sed 's/Test unit written to //' || true)
        result="CRASH (exit $rc) ${artifact:-see $log}"
        grep -m 3 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$log" | sed 's/^/    /' || true
    fi
    summary+=("$(printf '%-12s %12s executions  %s' "$t" "${execs:-?}" "$result")")
done

echo "== summary (${seconds} s per target; logs in fuzz/logs/)"
printf '%s\n' "${summary[@]}"
exit $status
