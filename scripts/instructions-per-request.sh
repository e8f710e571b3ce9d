#!/usr/bin/env bash
# User-space instructions per GET presence, counted by callgrind, which does
# not depend on how busy the machine is: the difference between a run of
# 4,200 requests and one of 200, over one keep-alive connection, divided by
# 4,000. Every run uses an application token (hs256) of one tenant; the
# arguments are added to `presenced serve` (for example
# `--throttle-app 1000000000/PT1S --throttle-tenant 1000000000/PT1S`).
#
#   scripts/instructions-per-request.sh [SERVE-ARGS...]
#
# Needs valgrind (Debian: apt-get install valgrind) and a release build
# (cargo build --release -p presenced).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || {
    echo "valgrind is missing; install it with: apt-get install valgrind" >&2
    exit 1
}
# PRESENCED_BINARY names another build (to compare two in one run).
binary=${PRESENCED_BINARY:-target/release/presenced}
[ -x "$binary" ] || {
    echo "$binary is missing; build it with: cargo build --release -p presenced" >&2
    exit 1
}
secret="the secret of the instruction counts, 32+ bytes"
token=$("$binary" token --tenant contoso --app 5d1f4c8e-0b6a-4d1e-9a43-6f0c2b7e8a91 \
    --roles Presence.ReadWrite.All --ttl PT1H --secret "$secret")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs presenced under callgrind for `$1` requests; prints its total Ir.
count() {
    local requests=$1
    shift
    valgrind --tool=callgrind --callgrind-out-file="$work/out.$requests" \
        "$binary" serve --listen 127.0.0.1:0 --store memory --clock manual \
        --auth hs256 --jwt-secret "$secret" "$@" >"$work/stdout.$requests" 2>"$work/stderr.$requests" &
    local server=$!
    local address=""
    for _ in $(seq 600); do
        address=$(sed -n 's/^presenced listening on http:\/\///p' "$work/stdout.$requests")
        [ -n "$address" ] && break
        sleep 0.1
    done
    [ -n "$address" ] || { echo "presenced did not start; see $work/stderr.$requests" >&2; exit 1; }
    python3 - "$address" "$token" "$requests" <<'EOF'
import http.client, sys
host, port = sys.argv[1].rsplit(":", 1)
connection = http.client.HTTPConnection(host, int(port))
headers = {"Authorization": "Bearer " + sys.argv[2]}
for _ in range(int(sys.argv[3])):
    connection.request("GET", "/v1.0/users/fa8bf3dc-eca7-46b7-bad1-db199b62afc3/presence", headers=headers)
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
EOF
    kill -TERM "$server"
    wait "$server" || true
    sed -n 's/^summary: \([0-9]*\).*/\1/p' "$work/out.$requests"
}

short=$(count 200 "$@")
long=$(count 4200 "$@")
echo "instructions per GET presence: $(((long - short) / 4000)) (serve args: ${*:-none})"
