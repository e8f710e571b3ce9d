#!/usr/bin/env bash
# User-space instructions per GET presence, counted by callgrind, which does
# not depend on how busy the machine is: over one keep-alive connection, 200
# requests first (every lazy start-up is done by then, quanta's calibration
# of the clock among them, whose length varies from run to run), then the
# counters are zeroed, 4,000 requests are sent and the counters dumped; the
# total divided by 4,000. The user read has a session, as the bench's
# users have. Every run uses an application token (hs256) of one tenant;
# the arguments are added to `presenced serve` (for example
# `--throttle-app 1000000000/PT1S --throttle-tenant 1000000000/PT1S`).
# With --h2c first, the requests go over HTTP/2 in plain text (prior
# knowledge), one stream after the other on one connection. With --batch
# first, each request is a getPresencesByUserId of 650 users who each have
# a session (20 requests of warm-up, then 200 counted). With --set first,
# each request is a setPresence of the one user, alternating between two
# states, so that every one changes the presence.
#
#   scripts/instructions-per-request.sh [--h2c | --batch | --set] [SERVE-ARGS...]
#
# Needs valgrind (Debian: apt-get install valgrind), for --h2c Python's h2
# (Debian: apt-get install python3-h2; set PYTHON=/usr/bin/python3 when
# python3 is another one), and a release build
# (cargo build --release -p presenced).
set -euo pipefail
cd "$(dirname "$0")/.."
protocol=http1
what="GET presence"
requests=4000
case "${1:-}" in
--h2c)
    protocol=h2c
    shift
    ;;
--set)
    protocol=set
    what="setPresence"
    shift
    ;;
--batch)
    protocol=batch
    what="getPresencesByUserId(650)"
    requests=200
    shift
    ;;
esac
python=${PYTHON:-python3}
command -v valgrind >/dev/null || {
    echo "valgrind is missing; install it with: apt-get install valgrind" >&2
    exit 1
}
if [ "$protocol" = h2c ] && ! "$python" -c 'import h2' 2>/dev/null; then
    echo "$python has no h2 module; install it with: apt-get install python3-h2 (and set PYTHON=/usr/bin/python3)" >&2
    exit 1
fi
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

# Runs presenced under callgrind; prints the instructions of `$1` requests
# after the warm-up.
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
    "$python" - "$address" "$token" "$requests" "$protocol" "$server" <<'EOF'
import http.client, json, socket, subprocess, sys
address, token, requests, protocol, server = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
WARM_UP = 20 if protocol == "batch" else 200
host, port = address.rsplit(":", 1)
path = "/v1.0/users/fa8bf3dc-eca7-46b7-bad1-db199b62afc3/presence"
# The user has a session, as the bench's users have: a user nothing is held
# for is answered Offline without the kept renderings.
setup = http.client.HTTPConnection(host, int(port))
body = ('{"sessionId":"5d1f4c8e-0b6a-4d1e-9a43-6f0c2b7e8a91","availability":"Available",'
        '"activity":"Available","expirationDuration":"PT1H"}')
json_headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
ids = ["%08x-0000-4000-8000-%012x" % (n, n) for n in range(650)]
for user_path in [path] + (["/v1.0/users/%s/presence" % id for id in ids] if protocol == "batch" else []):
    setup.request("POST", user_path + "/setPresence", body=body, headers=json_headers)
    answer = setup.getresponse()
    answer.read()
    assert answer.status == 200, answer.status
setup.close()
def zero():
    subprocess.run(["callgrind_control", "--zero", server], check=True, capture_output=True)
if protocol == "batch":
    connection = http.client.HTTPConnection(host, int(port))
    batch = json.dumps({"ids": ids})
    for sent in range(WARM_UP + requests):
        if sent == WARM_UP:
            zero()
        connection.request("POST", "/v1.0/communications/getPresencesByUserId", body=batch, headers=json_headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
elif protocol == "set":
    connection = http.client.HTTPConnection(host, int(port))
    states = [body, body.replace('"Available","activity":"Available"', '"Busy","activity":"InACall"')]
    for sent in range(WARM_UP + requests):
        if sent == WARM_UP:
            zero()
        connection.request("POST", path + "/setPresence", body=states[sent % 2], headers=json_headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
elif protocol == "http1":
    connection = http.client.HTTPConnection(host, int(port))
    headers = {"Authorization": "Bearer " + token}
    for sent in range(WARM_UP + requests):
        if sent == WARM_UP:
            zero()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
else:
    import h2.config, h2.connection, h2.events
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    sock.sendall(connection.data_to_send())
    headers = [(":method", "GET"), (":path", path), (":scheme", "http"),
               (":authority", address), ("authorization", "Bearer " + token)]
    for sent in range(WARM_UP + requests):
        if sent == WARM_UP:
            zero()
        stream = connection.get_next_available_stream_id()
        connection.send_headers(stream, headers, end_stream=True)
        sock.sendall(connection.data_to_send())
        status, ended = None, False
        while not ended:
            data = sock.recv(65536)
            assert data, "presenced closed the connection"
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    ended = True
            sock.sendall(connection.data_to_send())
        assert status == b"200", status
subprocess.run(["callgrind_control", "--dump", server], check=True, capture_output=True)
EOF
    kill -TERM "$server"
    wait "$server" || true
    # The dump taken after the requests, the one file beside the last.
    sed -n 's/^summary: \([0-9]*\).*/\1/p' "$work/out.$requests.1"
}

total=$(count "$requests" "$@")
echo "instructions per $what over $([ "$protocol" = h2c ] && echo h2c || echo http1): $((total / requests)) (serve args: ${*:-none})"
