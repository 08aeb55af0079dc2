#!/usr/bin/env bash
# Runs the cargo-fuzz targets for SECONDS each, starting from the committed corpus.
#
#   fuzz/run.sh SECONDS [TARGET...]     (no TARGET: every target in fuzz/Cargo.toml)
#
# Works on a stable toolchain: with `--sanitizer none` cargo-fuzz passes rustc no -Z flag
# (the sanitizers are what needs nightly), so neither nightly nor RUSTC_BOOTSTRAP is needed.
# Installs cargo-fuzz when it is missing. The committed corpus is fuzz/seeds/TARGET (read
# only here); what a run adds goes to fuzz/corpus/TARGET (ignored by git). A finding stops
# the script with a non-zero status; the input is in fuzz/artifacts/TARGET/. See
# docs/fuzzing.md.
set -euo pipefail

usage() {
    echo "usage: fuzz/run.sh SECONDS [TARGET...]" >&2
    exit 2
}
[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
seconds=$1
shift

cd "$(dirname "${BASH_SOURCE[0]}")"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

flags=(--sanitizer none)
start=$SECONDS
cargo fuzz build "${flags[@]}"
echo "fuzz/run.sh: built in $((SECONDS - start)) s" >&2

summary=()
for target in "${targets[@]}"; do
    [[ -d seeds/$target ]] || { echo "fuzz/run.sh: no seeds/$target" >&2; exit 2; }
    mkdir -p "corpus/$target"
    log=$(mktemp)
    set +e
    # -timeout: an input that takes 5 s (inputs are a few KiB) is a finding, like a crash;
    # -rss_limit_mb: so is one that needs 2 GiB.
    cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
        tee "$log" | grep -E '^(==|SUMMARY|#[0-9]+[[:space:]]+DONE)|INFO: (seed|Loaded)|panicked|Test unit written'
    status=${PIPESTATUS[0]}
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1)
    rm -f "$log"
    summary+=("$target: ${runs:-?} executions, ${corp:-corp: ?}, status $status")
    if [[ $status -ne 0 ]]; then
        printf '%s\n' "${summary[@]}" >&2
        echo "fuzz/run.sh: $target found something; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
printf '%s\n' "${summary[@]}"
echo "fuzz/run.sh: done in $((SECONDS - start)) s" >&2
