"""The official Microsoft Graph Python SDK against a throttling presenced.

The SDK's default middleware retries a 429 after its Retry-After by itself;
this script makes more requests than the limit allows at once and expects
every one to succeed, with no retry code of its own. Usage:

    python graph_sdk_throttled.py BASE_URL TOKEN REQUESTS

Every check raises on failure, so the exit status is the verdict.
"""

import asyncio
import datetime
import sys

from graph_sdk_client import graph_client
from msgraph.generated.users.item.presence.set_presence.set_presence_post_request_body import (
    SetPresencePostRequestBody,
)

USER = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3"
APP = "22553876-f5ab-4529-bffb-cfe50aa89f87"


async def main(base_url, token, requests):
    client = graph_client(base_url, token)
    presence = client.users.by_user_id(USER).presence
    await presence.set_presence.post(
        SetPresencePostRequestBody(
            session_id=APP,
            availability="Busy",
            activity="InACall",
            expiration_duration=datetime.timedelta(hours=1),
        )
    )
    for number in range(requests - 1):
        shown = await presence.get()
        if (shown.availability, shown.activity) != ("Busy", "InACall"):
            raise AssertionError(f"request {number + 2} read {shown.availability}, {shown.activity}")
    print(f"ok: {requests} requests answered")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
