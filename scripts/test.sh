#!/usr/bin/env bash
# Runs every check presenced has: formatting, lints, every test (unit,
# property, integration against the real binary, the official Graph Python
# SDK, which the SDK test installs into a virtual environment under target/
# on first use, the official Graph JavaScript SDKs and playwright-core,
# which the tests install with npm ci under target/, and headless Chromium),
# the benchmark harness in quick mode, and each fuzz target for a short time
# (scripts/fuzz.sh, which needs a nightly toolchain and installs cargo-fuzz
# when it is missing). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "scripts/test.sh: '$1' is missing. $2" >&2
        exit 1
    }
}
need cargo "Install Rust with rustup (https://rustup.rs)."
need python3 "Install Python 3 with venv and pip (Debian: apt-get install python3 python3-venv python3-pip)."
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq python3-venv python3-pip
    else
        echo "scripts/test.sh: Python's venv/ensurepip modules are missing; install python3-venv." >&2
        exit 1
    fi
fi
# Installs Debian packages when run as root, or fails naming them:
# apt_install WHAT-IS-MISSING PACKAGE...
apt_install() {
    local missing=$1
    shift
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
    else
        echo "scripts/test.sh: $missing is missing; install it with: sudo apt-get install $*" >&2
        exit 1
    fi
}
# The Redis tests (presenced-testkit) start real redis-server processes.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-server redis-server redis-tools
fi
# The JavaScript SDK and browser tests run node (20 or later: the pinned
# packages need it) and npm, which installs the pinned packages under
# target/, and Debian's Chromium, which playwright-core drives (it never
# downloads a browser of its own).
if ! command -v node >/dev/null 2>&1; then
    apt_install "Node.js" nodejs npm
fi
need npm "Install npm, the one of your Node.js (Debian: apt-get install npm)."
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "scripts/test.sh: Node.js $(node --version) is too old: the pinned JavaScript packages (tests/js) need Node.js 20 or later (Debian 13's nodejs, or NodeSource's packages on Debian 12)." >&2
    exit 1
fi
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    apt_install "Chromium (/usr/bin/chromium)" chromium chromium-driver
fi

# Each step's time is printed at the end (the README's CI table comes from it).
timings=()
step() {
    local name=$1 started=$SECONDS
    shift
    echo "== $name"
    "$@"
    timings+=("$(printf '%5d s  %s' $((SECONDS - started)) "$name")")
}
report() {
    echo "== step times"
    printf '%s\n' "${timings[@]}"
    printf '%5d s  in all\n' "$SECONDS"
}
trap report EXIT

# Fuzzing needs a nightly toolchain and cargo-fuzz: checked (and cargo-fuzz
# installed) now, not after the tests.
step "fuzzing set-up" scripts/fuzz.sh --setup

step "format" cargo fmt --all -- --check
step "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "tests (unit, property, integration, SDKs, browser)" cargo test --workspace --locked

# The benchmark harness in its quick mode, so that it never rots. Its
# targets are for the full run on a quiet machine and are not asserted
# here; it fails only if a request or a measurement fails.
step "quick bench (release build and run)" cargo run --release --locked -p presenced-bench -- --quick

# Each fuzz target for a bounded time (PRESENCED_FUZZ_SECONDS, default 20),
# after its corpus was replayed by `cargo test`; a crash fails the run.
# --quick builds in a quarter of the optimized build's time, which is most
# of this step. scripts/fuzz.sh runs them longer.
step "fuzzing (build and each target)" scripts/fuzz.sh --quick "${PRESENCED_FUZZ_SECONDS:-20}"
