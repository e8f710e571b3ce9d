#!/usr/bin/env bash
# Takes the board's screenshots for the docs:
#
#   docs/board-desktop.png   the board at 1280×800
#   docs/board-phone.png     the board on a phone (390×844)
#   docs/board-detail.png    the detail of the user with two sessions (desktop)
#
# It builds presenced, starts it on a free loopback port with the manual
# clock and no tokens, seeds a small tenant of a dozen named users (every
# availability colour, status messages, out of office, work locations, a
# user-preferred presence, a user with two sessions, an Offline user with a
# status message), and drives Debian's Chromium, headless, through the
# pinned playwright-core (crates/presenced/tests/js), installed where the
# benchmark harness installs it (target/tmp/presenced-bench-js). The server
# is stopped when the script ends, however it ends.
#
# Needs Node.js 20 or later with npm, Chromium at /usr/bin/chromium and
# curl: scripts/test.sh installs the first two when run as root, or run
# `apt-get install nodejs npm chromium curl`.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "scripts/board-screenshots.sh: $*" >&2
    exit 1
}
fix="scripts/test.sh installs them when run as root, or run: apt-get install nodejs npm chromium curl"
command -v node >/dev/null 2>&1 || fail "node is missing; $fix"
command -v npm >/dev/null 2>&1 || fail "npm is missing; $fix"
command -v curl >/dev/null 2>&1 || fail "curl is missing; $fix"
[ -x /usr/bin/chromium ] || fail "/usr/bin/chromium is missing; $fix"
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] ||
    fail "Node.js $(node --version) is too old: the pinned playwright-core needs 20 or later"

# The release build: the one the benchmark harness builds (cargo run
# --release -p presenced-bench), so running one after the other builds
# once; the board's files are built into either build alike, and a dozen
# users need no speed.
target=${CARGO_TARGET_DIR:-target}
echo "== building presenced (cargo build --release -p presenced)"
cargo build --release -p presenced --bin presenced
presenced=$target/release/presenced

# The pinned packages, installed as the harness installs them (browser.rs):
# again only when the pins changed since the last install.
pins=crates/presenced/tests/js
js=$target/tmp/presenced-bench-js
if ! cat "$pins/package.json" "$pins/package-lock.json" | cmp -s - "$js/installed-from.txt" ||
    [ ! -f "$js/node_modules/.package-lock.json" ]; then
    echo "== installing the pinned JavaScript packages (npm ci) into $js"
    rm -rf "$js"
    mkdir -p "$js"
    cp "$pins/package.json" "$pins/package-lock.json" "$js/"
    (cd "$js" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    cat "$pins/package.json" "$pins/package-lock.json" >"$js/installed-from.txt"
fi
cp scripts/board-screenshots.mjs "$js/board-screenshots.mjs"

# The server, on a port the kernel picks; it prints its address first.
work=$(mktemp -d)
server=""
stop() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM HUP
"$presenced" serve --listen 127.0.0.1:0 --store memory --clock manual --auth none \
    >"$work/stdout" 2>"$work/log" &
server=$!
for _ in $(seq 100); do
    grep -q "listening on http://" "$work/stdout" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || fail "presenced exited: $(cat "$work/log")"
    sleep 0.1
done
origin=$(grep -o "http://[0-9.:]*" "$work/stdout") || fail "presenced did not say where it listens"
echo "== seeding $origin"

post() { # post PATH JSON
    curl -sS --fail-with-body -o /dev/null -H "Content-Type: application/json" -d "$2" "$origin$1" ||
        fail "POST $1 $2 was refused"
}
put() { # put PATH JSON
    curl -sS --fail-with-body -o /dev/null -X PUT -H "Content-Type: application/json" -d "$2" "$origin$1" ||
        fail "PUT $1 $2 was refused"
}
# Two applications' sessions (with --auth none any session id is taken).
teams=0d3c1a52-6b1e-4f5a-9a67-7e2b4c9d1f10
phone=9b7e2c41-3d5a-4e8f-b1c2-6a4d8e0f2b37
session() { # session USER AVAILABILITY ACTIVITY [SESSION-ID: Teams's]
    post "/v1.0/users/$1/presence/setPresence" \
        "{\"sessionId\":\"${4:-$teams}\",\"availability\":\"$2\",\"activity\":\"$3\",\"expirationDuration\":\"PT4H\"}"
}
message() { # message USER TEXT
    post "/v1.0/users/$1/presence/setStatusMessage" \
        "{\"statusMessage\":{\"message\":{\"content\":\"$2\",\"contentType\":\"text\"}}}"
}
location() { # location USER office|remote|timeOff
    post "/v1.0/users/$1/presence/setManualLocation" "{\"workLocationType\":\"$2\"}"
}

session adele.vance@contoso.com Available Available
message adele.vance@contoso.com "Reviewing the Q3 roadmap, ping me any time"
location adele.vance@contoso.com office

session alex.wilber@contoso.com Busy InACall
location alex.wilber@contoso.com remote

session diego.siciliani@contoso.com Busy InAConferenceCall
message diego.siciliani@contoso.com "Customer workshop all afternoon"

session grady.archie@contoso.com DoNotDisturb Presenting
message grady.archie@contoso.com "Presenting at the all-hands until 15:00"

session henrietta.mueller@contoso.com Away Away
location henrietta.mueller@contoso.com remote

# A user-preferred presence: Be right back, over an Available session.
session isaiah.langer@contoso.com Available Available
post /v1.0/users/isaiah.langer@contoso.com/presence/setUserPreferredPresence \
    '{"availability":"BeRightBack","activity":"BeRightBack","expirationDuration":"PT1H"}'

session johanna.lorenz@contoso.com Away Away
put /_presenced/users/johanna.lorenz@contoso.com/outOfOffice \
    '{"isOutOfOffice":true,"message":"On leave until 14 October; Lee Gu covers for me."}'
message johanna.lorenz@contoso.com "On leave, back on 14 October"
location johanna.lorenz@contoso.com timeOff

# Two sessions: Teams in a call, the phone app Available; the call decides.
session lee.gu@contoso.com Busy InACall
session lee.gu@contoso.com Available Available "$phone"
message lee.gu@contoso.com "Covering for Johanna this week"
location lee.gu@contoso.com office

# Offline, with a status message and no session.
message lidia.holloway@contoso.com "Travelling to Lisbon, back on Monday"

session megan.bowen@contoso.com Available Available
location megan.bowen@contoso.com office

session nestor.wilke@contoso.com Busy InACall
message nestor.wilke@contoso.com "Interviewing candidates until noon"

session patti.fernandez@contoso.com Available Available
post /v1.0/users/patti.fernandez@contoso.com/presence/setUserPreferredPresence \
    '{"availability":"Offline","activity":"OffWork","expirationDuration":"PT8H"}'

echo "== taking the screenshots"
mkdir -p docs
docs=$PWD/docs
(cd "$js" && node board-screenshots.mjs "$origin" 12 lee.gu@contoso.com "$docs")
echo "wrote docs/board-desktop.png, docs/board-phone.png and docs/board-detail.png"
