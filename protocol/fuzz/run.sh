#!/usr/bin/env bash
# Runs the conclave-protocol fuzz targets, one after another, for SECONDS each.
#
#   protocol/fuzz/run.sh SECONDS [TARGET...]     (from any directory)
#
# Targets: frame messages artefacts stage1 master participant trailer screen
# recording files audit (all by default).
# First writes the seed inputs (src/bin/seeds.rs) into corpus/<target>/, then
# runs `cargo fuzz run` on each target with -max_total_time=SECONDS. Exits
# non-zero if any target crashes (panic, failed assertion, ASan report,
# timeout or out-of-memory); the crashing input is then in
# artifacts/<target>/ and `cargo fuzz run --fuzz-dir protocol/fuzz TARGET
# ARTIFACT` replays it.
#
# Stable Rust only: cargo-fuzz 0.13 passes `-Zsanitizer=address` to rustc,
# which a stable compiler accepts with RUSTC_BOOTSTRAP=1 (its AddressSanitizer
# runtime ships with the stable standard library), so the targets keep ASan.
# Set FUZZ_SANITIZER=none to build without it.
#
# Environment:
#   CONCLAVE_FUZZ_TARGET_DIR  build directory (default ~/.cache/conclave-fuzz-target,
#                             kept apart from the workspace's target directory)
#   CARGO_BUILD_JOBS          compile jobs (default 1: the machines have 2 cores)
#   FUZZ_SANITIZER            address (default) or none
#   FUZZ_ARGS                 extra libFuzzer arguments, e.g. "-jobs=2 -workers=2"
set -euo pipefail

all_targets=(frame messages artefacts stage1 master participant trailer screen recording files audit)

usage() {
  echo "usage: $0 SECONDS [TARGET...]" >&2
  echo "targets: ${all_targets[*]}" >&2
  exit 2
}

[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
seconds=$1
shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "unknown target: $t" >&2; usage; }
done

# Largest input per target: room for every valid message of the target's kind
# (engine inputs are sequences of frames, each up to 64 KiB).
max_len() {
  case $1 in
    frame | messages | artefacts | stage1) echo 4096 ;;
    trailer) echo 8192 ;;
    master | participant) echo 70000 ;;
    # A few update messages: tiles of up to 16 KiB each.
    screen) echo 70000 ;;
    # A few short entries and their checkpoints (110 bytes each).
    recording) echo 16384 ;;
    # One message: a full chunk is 64 KiB and a few bytes.
    files) echo 66000 ;;
    # A few audit-log lines (each at most 4 KiB).
    audit) echo 16384 ;;
  esac
}

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target_dir=${CONCLAVE_FUZZ_TARGET_DIR:-$HOME/.cache/conclave-fuzz-target}
sanitizer=${FUZZ_SANITIZER:-address}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# The build directory is always ours, whatever the caller's CARGO_TARGET_DIR.
unset CARGO_TARGET_DIR
read -r -a extra_args <<<"${FUZZ_ARGS:-}"

cd "$fuzz_dir"
logs="$target_dir/run-logs"
mkdir -p "$logs"

echo "== seeds -> $fuzz_dir/corpus"
cargo run --quiet --target-dir "$target_dir" --features seeds --bin seeds -- "$fuzz_dir/corpus"

failed=()
summary=()
for t in "${targets[@]}"; do
  echo
  echo "== $t: ${seconds}s, max_len $(max_len "$t"), sanitizer $sanitizer"
  start=$(date +%s)
  # Build first, so that the build does not count against the run's time.
  cargo fuzz build --fuzz-dir "$fuzz_dir" --target-dir "$target_dir" --sanitizer "$sanitizer" "$t"
  built=$(date +%s)
  status=0
  cargo fuzz run --fuzz-dir "$fuzz_dir" --target-dir "$target_dir" --sanitizer "$sanitizer" "$t" -- \
    -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=30 -print_final_stats=1 \
    ${extra_args[@]+"${extra_args[@]}"} 2>&1 | tee "$logs/$t.log" || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -n 1)
  line=$(printf '%-12s build %3ss  runs %-9s exec/s %-7s' "$t" "$((built - start))" "${runs:-?}" "${rate:-?}")
  if [[ $status -ne 0 ]]; then
    failed+=("$t")
    line+="  FAILED (exit $status; see $fuzz_dir/artifacts/$t/)"
  fi
  summary+=("$line")
done

echo
echo "== summary (logs in $logs)"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "crashed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran without a crash"
