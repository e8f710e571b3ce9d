"""Drives presenced with the official Microsoft Graph Python SDK.

The SDK code below is what a Graph user writes; the only change for presenced
is the request adapter's base URL. Usage:

    python graph_sdk_roundtrip.py BASE_URL TOKEN FIXTURES_DIR

FIXTURES_DIR holds the test certificate and key for rich notifications and
graph_decrypt.py, Graph's documented decryption steps.

Every check raises on failure, so the exit status is the verdict.
"""

import asyncio
import datetime
import http.server
import json
import os
import subprocess
import threading
import urllib.parse
import sys

from kiota_abstractions.api_error import APIError
from graph_sdk_client import GzipBodies, graph_client
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem
from msgraph.generated.communications.get_presences_by_user_id.get_presences_by_user_id_post_request_body import (
    GetPresencesByUserIdPostRequestBody,
)
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.presence_status_message import PresenceStatusMessage
from msgraph.generated.models.subscription import Subscription
from msgraph.generated.users.item.presence.clear_presence.clear_presence_post_request_body import (
    ClearPresencePostRequestBody,
)
from msgraph.generated.users.item.presence.set_presence.set_presence_post_request_body import (
    SetPresencePostRequestBody,
)
from msgraph.generated.users.item.presence.set_status_message.set_status_message_post_request_body import (
    SetStatusMessagePostRequestBody,
)
from msgraph.generated.users.item.presence.set_user_preferred_presence.set_user_preferred_presence_post_request_body import (
    SetUserPreferredPresencePostRequestBody,
)

USER = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3"
OTHER = "66825e03-7ef5-42da-9069-724602c31f6b"
APP = "22553876-f5ab-4529-bffb-cfe50aa89f87"


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


async def shown(client, user):
    presence = await client.users.by_user_id(user).presence.get()
    return presence.availability, presence.activity


async def main(base_url, token):
    fixtures = sys.argv[3]
    client = graph_client(base_url, token)
    presence = client.users.by_user_id(USER).presence

    await presence.set_presence.post(
        SetPresencePostRequestBody(
            session_id=APP,
            availability="Available",
            activity="Available",
            expiration_duration=datetime.timedelta(hours=1),
        )
    )
    check(await shown(client, USER) == ("Available", "Available"), "setPresence with a timedelta expiration")

    await presence.set_presence.post(
        SetPresencePostRequestBody(session_id=APP, availability="Busy", activity="InACall")
    )
    check(await shown(client, USER) == ("Busy", "InACall"), "setPresence refreshes the app's session")

    await presence.set_user_preferred_presence.post(
        SetUserPreferredPresencePostRequestBody(
            availability="DoNotDisturb",
            activity="DoNotDisturb",
            expiration_duration=datetime.timedelta(hours=8),
        )
    )
    check(await shown(client, USER) == ("DoNotDisturb", "DoNotDisturb"), "setUserPreferredPresence wins")

    await presence.clear_user_preferred_presence.post()
    check(await shown(client, USER) == ("Busy", "InACall"), "clearUserPreferredPresence")

    await presence.set_status_message.post(
        SetStatusMessagePostRequestBody(
            status_message=PresenceStatusMessage(
                message=ItemBody(content="In the lab until noon", content_type=BodyType.Text),
                expiry_date_time=DateTimeTimeZone(date_time="2099-01-01T12:00:00", time_zone="Pacific Standard Time"),
            )
        )
    )
    read = await presence.get()
    check(read.status_message.message.content == "In the lab until noon", "setStatusMessage")
    check(read.sequence_number is not None and read.sequence_number != "", "sequenceNumber is present")

    via_communications = await client.communications.presences.by_presence_id(USER).get()
    check(via_communications.id == USER and via_communications.availability == "Busy", "GET /communications/presences/{id}")

    batch = await client.communications.get_presences_by_user_id.post(
        GetPresencesByUserIdPostRequestBody(ids=[USER, OTHER])
    )
    by_id = {entry.id: (entry.availability, entry.activity) for entry in batch.value}
    check(by_id == {USER: ("Busy", "InACall"), OTHER: ("Offline", "Offline")}, "getPresencesByUserId")

    await presence.clear_presence.post(ClearPresencePostRequestBody(session_id=APP))
    check(await shown(client, USER) == ("Offline", "Offline"), "clearPresence of the only session")

    try:
        await presence.clear_presence.post(ClearPresencePostRequestBody(session_id=APP))
        raise AssertionError("clearing a missing session must fail")
    except APIError as error:
        check(error.response_status_code == 404, "clearPresence of a missing session is a 404 the SDK raises")

    try:
        await presence.set_presence.post(
            SetPresencePostRequestBody(
                session_id=APP,
                availability="Available",
                activity="Available",
                expiration_duration=datetime.timedelta(minutes=1),
            )
        )
        raise AssertionError("an expiration under five minutes must fail")
    except APIError as error:
        code = getattr(getattr(error, "error", None), "code", None)
        check(error.response_status_code == 400 and code == "InvalidArgument", "out-of-range expiration is InvalidArgument")

    await batching(client)
    await compressed(base_url, token)
    await subscriptions(client, fixtures)


async def batching(client):
    """Graph's JSON batching through the SDK's own batch helper: twenty
    setPresence requests in one batch (the SDK sends absolute URLs), then a
    read of each user's presence in a second."""
    users = [f"b1a7c0de-0000-4000-8000-{n:012d}" for n in range(20)]
    writes = BatchRequestContent()
    for n, user in enumerate(users):
        information = client.users.by_user_id(user).presence.set_presence.to_post_request_information(
            SetPresencePostRequestBody(session_id=APP, availability="Busy", activity="InAConferenceCall")
        )
        writes.add_request(str(n), BatchRequestItem(request_information=information, id=str(n)))
    answered = await client.batch.post(batch_request_content=writes)
    statuses = answered.get_response_status_codes()
    check(statuses == {str(n): 200 for n in range(20)}, f"a $batch of 20 setPresence, each 200: {statuses}")

    reads = BatchRequestContent()
    for n, user in enumerate(users[:3]):
        information = client.users.by_user_id(user).presence.to_get_request_information()
        reads.add_request(f"read-{n}", BatchRequestItem(request_information=information, id=f"read-{n}"))
    answered = await client.batch.post(batch_request_content=reads)
    # The SDK reads an inner body only when it is a base64 string; Graph
    # (and presenced) answer JSON bodies as JSON objects, which this SDK
    # version leaves as None: the statuses and content types are checked
    # here, the values by reading each user below.
    for n in range(3):
        item = answered.get_response_by_id(f"read-{n}")
        check(item.status == 200 and (item.content_type or "").startswith("application/json"),
              f"a batched read is 200 with a JSON body: {item.status} {item.content_type}")
    for user in users:
        check(await shown(client, user) == ("Busy", "InAConferenceCall"), f"{user} was set by the batch")


async def compressed(base_url, token):
    """Requests sent gzip-compressed, and large answers received so."""
    gzip_bodies = GzipBodies()
    client = graph_client(base_url, token, middleware=gzip_bodies)
    await client.users.by_user_id(OTHER).presence.set_presence.post(
        SetPresencePostRequestBody(session_id=APP, availability="Away", activity="Away")
    )
    check(gzip_bodies.sent == 1, "the setPresence body was sent gzip-compressed")
    check(await shown(client, OTHER) == ("Away", "Away"), "a gzip-compressed setPresence is applied")
    ids = [OTHER] + [f"9a2e0000-0000-4000-8000-{n:012d}" for n in range(649)]
    read = await client.communications.get_presences_by_user_id.post(
        GetPresencesByUserIdPostRequestBody(ids=ids)
    )
    check(len(read.value) == 650 and read.value[0].availability == "Away", "getPresencesByUserId(650), gzip both ways")
    check(gzip_bodies.answered_encodings[-1] == "gzip", f"the 650-id answer came gzip-compressed: {gzip_bodies.answered_encodings}")


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook as Graph's docs write one: echo the validation token as
    text/plain, accept notifications with 202."""

    received = []
    arrived = threading.Event()

    def do_POST(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        if "validationToken" in query:
            token = query["validationToken"][0].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(token)))
            self.end_headers()
            self.wfile.write(token)
            return
        Receiver.received.extend(json.loads(body)["value"])
        Receiver.arrived.set()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *arguments):
        pass


async def subscriptions(client, fixtures):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/notify"
    with open(os.path.join(fixtures, "notify-cert.b64")) as file:
        certificate = file.read().strip()
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=50)
    created = await client.subscriptions.post(
        Subscription(
            change_type="updated",
            notification_url=url,
            resource=f"/communications/presences?$filter=id in ('{USER}','{OTHER}')",
            expiration_date_time=expires,
            client_state="sdk secret",
            include_resource_data=True,
            encryption_certificate=certificate,
            encryption_certificate_id="sdk-certificate",
        )
    )
    check(created.id and created.change_type == "updated", "subscriptions.post after the handshake")

    await client.users.by_user_id(OTHER).presence.set_presence.post(
        SetPresencePostRequestBody(session_id=APP, availability="DoNotDisturb", activity="Presenting")
    )
    await asyncio.get_running_loop().run_in_executor(None, Receiver.arrived.wait, 10)
    check(len(Receiver.received) == 1, f"one notification arrived: {Receiver.received}")
    item = Receiver.received[0]
    check(item["clientState"] == "sdk secret" and item["subscriptionId"] == created.id, "clientState and subscriptionId")
    decrypted = subprocess.run(
        [
            sys.executable,
            os.path.join(fixtures, "graph_decrypt.py"),
            os.path.join(fixtures, "notify-key.pem"),
            os.path.join(fixtures, "notify-cert.pem"),
        ],
        input=json.dumps(item).encode(),
        capture_output=True,
        check=True,
    )
    presence = json.loads(decrypted.stdout)
    check(
        (presence["id"], presence["availability"], presence["activity"]) == (OTHER, "DoNotDisturb", "Presenting"),
        f"encryptedContent decrypts with Graph's documented steps: {presence}",
    )

    read = await client.subscriptions.by_subscription_id(created.id).get()
    check(read.id == created.id and read.include_resource_data, "subscriptions.get")
    listed = await client.subscriptions.get()
    check([entry.id for entry in listed.value] == [created.id], "subscriptions.list")
    later = expires + datetime.timedelta(minutes=5)
    renewed = await client.subscriptions.by_subscription_id(created.id).patch(Subscription(expiration_date_time=later))
    check(abs((renewed.expiration_date_time - later).total_seconds()) < 1, "subscriptions.patch renews")
    await client.subscriptions.by_subscription_id(created.id).delete()
    try:
        await client.subscriptions.by_subscription_id(created.id).get()
        raise AssertionError("a deleted subscription must be gone")
    except APIError as error:
        check(error.response_status_code == 404, "subscriptions.delete")
    server.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
