// Drives presenced with the legacy Microsoft Graph JavaScript client
// (@microsoft/microsoft-graph-client 3.x), unmodified, as a Graph user
// writes it; the only changes for presenced are the base URL and
// customHosts (graph_clients.mjs). Usage:
//
//     node sdk_legacy.mjs roundtrip|batch SETTINGS_JSON
//
// SETTINGS_JSON: {"origin", "appToken", "meToken", "badToken",
// "throttledOrigin", "receiverCert", "receiverKey"} (see sdk_js.rs). Node
// trusts presenced's test certificate through NODE_EXTRA_CA_CERTS. Every
// check throws on failure, so the exit status is the verdict.

import { BatchRequestContent, BatchResponseContent, GraphError, RetryHandlerOptions } from "@microsoft/microsoft-graph-client";

import { APP, OTHER, USER, check, failure, legacyClient } from "./graph_clients.mjs";
import { startReceiver } from "./webhook_receiver.mjs";

const [part, json] = process.argv.slice(2);
const settings = JSON.parse(json);
const client = legacyClient(settings.origin, settings.appToken);

async function shown(user) {
  const presence = await client.api(`/users/${user}/presence`).get();
  return `${presence.availability}/${presence.activity}`;
}

/** Asserts `error` is the client's GraphError with `status` and `code`. */
function graphError(error, status, code, what) {
  check(
    error instanceof GraphError && error.statusCode === status && error.code === code && error.message.length > 10,
    `${what}: GraphError ${status} ${code} (${error.statusCode} ${error.code}: ${error.message})`,
  );
}

async function presence() {
  const actions = `/users/${USER}/presence`;
  await client.api(`${actions}/setPresence`).post({
    sessionId: APP,
    availability: "Available",
    activity: "Available",
    expirationDuration: "PT1H",
  });
  check((await shown(USER)) === "Available/Available", "setPresence");

  await client.api(`${actions}/setPresence`).post({ sessionId: APP, availability: "Busy", activity: "InACall" });
  check((await shown(USER)) === "Busy/InACall", "setPresence refreshes the app's session");

  await client.api(`${actions}/setUserPreferredPresence`).post({
    availability: "DoNotDisturb",
    activity: "DoNotDisturb",
    expirationDuration: "PT8H",
  });
  check((await shown(USER)) === "DoNotDisturb/DoNotDisturb", "setUserPreferredPresence wins");

  await client.api(`${actions}/clearUserPreferredPresence`).post();
  check((await shown(USER)) === "Busy/InACall", "clearUserPreferredPresence");

  await client.api(`${actions}/setStatusMessage`).post({
    statusMessage: {
      message: { content: "In the lab until noon", contentType: "text" },
      expiryDateTime: { dateTime: "2099-01-01T12:00:00", timeZone: "Pacific Standard Time" },
    },
  });
  const read = await client.api(`${actions}`).get();
  check(read.statusMessage.message.content === "In the lab until noon", "setStatusMessage");
  check(typeof read.sequenceNumber === "string" && read.sequenceNumber !== "", "sequenceNumber is present");

  const communications = await client.api(`/communications/presences/${USER}`).get();
  check(communications.id === USER && communications.availability === "Busy", "GET /communications/presences/{id}");

  const batch = await client.api("/communications/getPresencesByUserId").post({ ids: [USER, OTHER] });
  const byId = Object.fromEntries(batch.value.map((entry) => [entry.id, `${entry.availability}/${entry.activity}`]));
  check(byId[USER] === "Busy/InACall" && byId[OTHER] === "Offline/Offline" && batch.value.length === 2, "getPresencesByUserId");

  // The signed-in user's own presence and work location (delegated only).
  const me = legacyClient(settings.origin, settings.meToken);
  const mine = await me.api("/me/presence").get();
  check(mine.id === USER && mine.availability === "Busy", "GET /me/presence");
  const location = async () => {
    const { workLocationType, source } = (await me.api("/me/presence").get()).workLocation;
    return `${workLocationType}/${source}`;
  };
  await me.api("/me/presence/setAutomaticLocation").post({ workLocationType: "remote" });
  check((await location()) === "remote/automatic", "setAutomaticLocation");
  await me.api("/me/presence/setManualLocation").post({ workLocationType: "office", placeId: "building-1" });
  check((await location()) === "office/manual", "setManualLocation overrides the automatic location");
  await me.api("/me/presence/clearAutomaticLocation").post();
  check((await location()) === "office/manual", "clearAutomaticLocation keeps the manual location");
  await me.api("/me/presence/clearLocation").post();
  check((await location()) === "unspecified/none", "clearLocation");

  await client.api(`${actions}/clearPresence`).post({ sessionId: APP });
  check((await shown(USER)) === "Offline/Offline", "clearPresence of the only session");
}

async function errors() {
  const actions = `/users/${USER}/presence`;
  graphError(
    await failure(client.api(`${actions}/clearPresence`).post({ sessionId: APP }), "clearing a missing session"),
    404,
    "NotFound",
    "clearPresence of a missing session",
  );
  graphError(
    await failure(
      client.api(`${actions}/setPresence`).post({
        sessionId: APP,
        availability: "Available",
        activity: "Available",
        expirationDuration: "PT1M",
      }),
      "an expiration under five minutes",
    ),
    400,
    "InvalidArgument",
    "an out-of-range expiration",
  );
  const stranger = legacyClient(settings.origin, settings.badToken);
  graphError(
    await failure(stranger.api(`${actions}`).get(), "a token signed with another secret"),
    401,
    "InvalidAuthenticationToken",
    "a bad token",
  );
  // A server that allows two requests an hour. The client's retry handler
  // would wait out Retry-After (up to three minutes, three times): turned
  // off for this request, so that the 429 reaches the caller.
  const throttled = legacyClient(settings.throttledOrigin, settings.appToken);
  const noRetry = () => [new RetryHandlerOptions(0, 0)];
  await throttled.api(`${actions}`).middlewareOptions(noRetry()).get();
  await throttled.api(`${actions}`).middlewareOptions(noRetry()).get();
  const refused = await failure(throttled.api(`${actions}`).middlewareOptions(noRetry()).get(), "a third request");
  graphError(refused, 429, "TooManyRequests", "beyond --throttle-app");
  check(Number(refused.headers.get("Retry-After")) >= 1, "the 429 carries Retry-After");
}

async function subscriptions() {
  const receiver = await startReceiver(settings.receiverCert, settings.receiverKey);
  const expires = new Date(Date.now() + 50 * 60 * 1000);
  const created = await client.api("/subscriptions").post({
    changeType: "updated",
    notificationUrl: receiver.url("/notify"),
    lifecycleNotificationUrl: receiver.url("/lifecycle"),
    resource: `/communications/presences?$filter=id in ('${USER}','${OTHER}')`,
    expirationDateTime: expires.toISOString(),
    clientState: "legacy secret",
  });
  check(
    typeof created.id === "string" && receiver.validated.includes("/notify") && receiver.validated.includes("/lifecycle"),
    "subscriptions.post after the https handshake of both URLs",
  );

  await client.api(`/users/${OTHER}/presence/setPresence`).post({
    sessionId: APP,
    availability: "DoNotDisturb",
    activity: "Presenting",
  });
  const [item] = await receiver.waitFor("/notify", 1);
  check(
    item.clientState === "legacy secret" && item.subscriptionId === created.id && item.resourceData.id === OTHER,
    "a notification arrived over https with clientState and subscriptionId",
  );

  const read = await client.api(`/subscriptions/${created.id}`).get();
  check(read.id === created.id && read.changeType === "updated", "subscriptions get");
  const listed = await client.api("/subscriptions").get();
  check(JSON.stringify(listed.value.map((entry) => entry.id)) === JSON.stringify([created.id]), "subscriptions list");
  const later = new Date(expires.getTime() + 5 * 60 * 1000);
  const renewed = await client.api(`/subscriptions/${created.id}`).patch({ expirationDateTime: later.toISOString() });
  check(Math.abs(new Date(renewed.expirationDateTime) - later) < 1000, "subscriptions update renews");
  await client.api(`/subscriptions/${created.id}`).delete();
  graphError(await failure(client.api(`/subscriptions/${created.id}`).get(), "a deleted subscription"), 404, "NotFound", "subscriptions delete");
  await receiver.close();
}

/** setPresence for 20 users in one $batch, through the client's
 * BatchRequestContent and BatchResponseContent, then each user read back. */
async function batch() {
  const users = Array.from({ length: 20 }, (_, index) => `batch-user-${index + 1}`);
  // Inner URLs are relative to the version: BatchRequestContent keeps the
  // path after the host, so the Request names no version.
  const steps = users.map((user, index) => ({
    id: String(index + 1),
    request: new Request(`${settings.origin}/users/${user}/presence/setPresence`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sessionId: APP, availability: "Busy", activity: "InACall", expirationDuration: "PT1H" }),
    }),
  }));
  const content = new BatchRequestContent(steps);
  const answered = new BatchResponseContent(await client.api("/$batch").post(await content.getContent()));
  const statuses = users.map((_, index) => answered.getResponseById(String(index + 1))?.status);
  check(statuses.every((status) => status === 200), `each of the 20 setPresence answered 200: ${statuses}`);
  for (const user of users) {
    check((await shown(user)) === "Busy/InACall", `${user} is Busy/InACall after the batch`);
  }
}

if (part === "roundtrip") {
  await presence();
  await errors();
  await subscriptions();
} else if (part === "batch") {
  await batch();
} else {
  throw new Error(`unknown part ${part}: roundtrip or batch`);
}
