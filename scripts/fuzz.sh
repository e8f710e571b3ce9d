#!/usr/bin/env bash
# Fuzzes presenced's parsers of caller input: each target of fuzz/ (see
# "Fuzzing" in the README) for SECONDS (default 300) in turn, with
# cargo-fuzz and libFuzzer on a nightly toolchain. scripts/test.sh runs it
# for a short time; run it longer by hand:
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]          fuzz (all targets by default)
#   scripts/fuzz.sh --merge [SECONDS] [TARGET...]  fuzz, then add the inputs that
#                                                  reached new code to fuzz/corpus/
#   scripts/fuzz.sh --quick [SECONDS] [TARGET...]  build unoptimized and without
#                                                  AddressSanitizer: a quarter of the
#                                                  build time, for short runs
#                                                  (scripts/test.sh's)
#   scripts/fuzz.sh --setup                        only check and install what it needs
#
# A crash, a failed check or an input that takes more than 10 seconds fails
# the run and leaves the input in fuzz/artifacts/<target>/; replay it with
# `cargo +nightly fuzz run <target> <file>` in fuzz/. New inputs are written
# under fuzz/target/found/, never into the committed corpus, unless --merge
# asks for it (libFuzzer's merge keeps only those that reach code the corpus
# does not; hit counts are not told apart, so that the corpus stays small).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

# The version the README documents; any 0.13 works.
CARGO_FUZZ_VERSION=0.13.2

setup() {
    if ! command -v rustup >/dev/null 2>&1; then
        echo "scripts/fuzz.sh: fuzzing needs rustup with a nightly toolchain; install rustup (https://rustup.rs), then: rustup toolchain install nightly" >&2
        exit 1
    fi
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
        echo "scripts/fuzz.sh: fuzzing needs a nightly toolchain (cargo-fuzz builds with sanitizers); install it with: rustup toolchain install nightly" >&2
        exit 1
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "scripts/fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io" >&2
        cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
    fi
}

merge=false
build=()
while [ $# -gt 0 ]; do
    case "$1" in
        --setup) setup; exit 0 ;;
        --merge) merge=true; shift ;;
        --quick) build=(--dev --sanitizer none); shift ;;
        *) break ;;
    esac
done
seconds="${1:-300}"
[ $# -gt 0 ] && shift
case "$seconds" in
    '' | *[!0-9]*) echo "scripts/fuzz.sh: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac
setup

# The fuzz build (coverage instrumentation, AddressSanitizer) keeps to
# fuzz/target, whatever the environment says, so that it never invalidates
# the main build.
export CARGO_TARGET_DIR="$PWD/target"
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

started=$(date +%s)
# With debug assertions and overflow checks; optimized and with
# AddressSanitizer unless --quick.
cargo +nightly fuzz build "${build[@]}"
echo "fuzz: built in $(($(date +%s) - started)) s"

mkdir -p target/logs
failed=()
for target in "${targets[@]}"; do
    mkdir -p "target/found/$target"
    log="target/logs/$target.log"
    if cargo +nightly fuzz run "${build[@]}" "$target" "target/found/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        # libFuzzer's last status line: runs, coverage, corpus size.
        summary=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
        echo "fuzz: $target: ${seconds} s, ${summary:-no status line}"
    else
        echo "fuzz: $target FAILED; the end of $PWD/$log:" >&2
        tail -n 40 "$log" >&2
        failed+=("$target")
    fi
    if $merge; then
        cargo +nightly fuzz run "${build[@]}" "$target" "corpus/$target" "target/found/$target" -- \
            -merge=1 -use_counters=0 >>"$log" 2>&1
        echo "fuzz: $target: corpus now $(find "corpus/$target" -type f | wc -l) files"
    fi
done
echo "fuzz: ${#targets[@]} targets in $(($(date +%s) - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]} (inputs in $PWD/artifacts/)" >&2
    exit 1
fi
