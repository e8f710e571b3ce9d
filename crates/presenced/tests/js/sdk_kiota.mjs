// Drives presenced with the Kiota-based Microsoft Graph JavaScript SDK
// (@microsoft/msgraph-sdk with its users and subscriptions packages),
// unmodified, as a Graph user writes it; the only change for presenced is
// the request adapter's base URL (graph_clients.mjs). Usage:
//
//     node sdk_kiota.mjs roundtrip|batch SETTINGS_JSON
//
// SETTINGS_JSON as for sdk_legacy.mjs. Every check throws on failure, so the
// exit status is the verdict.
//
// /communications has no fluent package published on npm
// (@microsoft/msgraph-sdk-communications is not there), so its two calls
// are Kiota's raw requests: a RequestInformation sent through the request
// adapter, with the SDK's own models and error mapping.

import { Duration, HttpMethod, RequestInformation } from "@microsoft/kiota-abstractions";
import { HttpClient, MiddlewareFactory, RetryHandlerOptions } from "@microsoft/kiota-http-fetchlibrary";
import {
  createPresenceCollectionResponseFromDiscriminatorValue,
  createPresenceFromDiscriminatorValue,
} from "@microsoft/msgraph-sdk/models/index.js";
import { createODataErrorFromDiscriminatorValue } from "@microsoft/msgraph-sdk/models/oDataErrors/index.js";

import { APP, OTHER, USER, check, failure, kiotaClient } from "./graph_clients.mjs";
import { startReceiver } from "./webhook_receiver.mjs";

const [part, json] = process.argv.slice(2);
const settings = JSON.parse(json);
const { client, adapter } = kiotaClient(settings.origin, settings.appToken);
const errorMapping = { XXX: createODataErrorFromDiscriminatorValue };

async function shown(user) {
  const presence = await client.users.byUserId(user).presence.get();
  return `${presence.availability}/${presence.activity}`;
}

/** Asserts `error` is the SDK's ODataError with `status` and `code` (its
 * `error` member is `errorEscaped` in TypeScript, where an Error's own
 * members would collide). */
function oDataError(error, status, code, what) {
  const main = error?.errorEscaped;
  check(
    error.responseStatusCode === status && main?.code === code && main?.message?.length > 10,
    `${what}: ODataError ${status} ${code} (${error.responseStatusCode} ${main?.code}: ${main?.message})`,
  );
}

/** A raw request through the adapter: `method` on `path` (under the base
 * URL), with a JSON body written by `write` when given. */
function raw(method, path, body, write) {
  const request = new RequestInformation(method, `{+baseurl}${path}`);
  request.headers.tryAdd("Accept", "application/json");
  if (body !== undefined) {
    request.setContentFromParsable(adapter, "application/json", body, write);
  }
  return request;
}

async function presence() {
  const user = client.users.byUserId(USER).presence;
  await user.setPresence.post({
    sessionId: APP,
    availability: "Available",
    activity: "Available",
    expirationDuration: new Duration({ hours: 1 }),
  });
  check((await shown(USER)) === "Available/Available", "setPresence with a Duration");

  await user.setPresence.post({ sessionId: APP, availability: "Busy", activity: "InACall" });
  check((await shown(USER)) === "Busy/InACall", "setPresence refreshes the app's session");

  await user.setUserPreferredPresence.post({
    availability: "DoNotDisturb",
    activity: "DoNotDisturb",
    expirationDuration: new Duration({ hours: 8 }),
  });
  check((await shown(USER)) === "DoNotDisturb/DoNotDisturb", "setUserPreferredPresence wins");

  await user.clearUserPreferredPresence.post();
  check((await shown(USER)) === "Busy/InACall", "clearUserPreferredPresence");

  await user.setStatusMessage.post({
    statusMessage: {
      message: { content: "In the lab until noon", contentType: "text" },
      expiryDateTime: { dateTime: "2099-01-01T12:00:00", timeZone: "Pacific Standard Time" },
    },
  });
  const read = await user.get();
  check(read.statusMessage.message.content === "In the lab until noon", "setStatusMessage");
  check(typeof read.sequenceNumber === "string" && read.sequenceNumber !== "", "sequenceNumber is present");

  const communications = await adapter.send(
    raw(HttpMethod.GET, `/communications/presences/${USER}`),
    createPresenceFromDiscriminatorValue,
    errorMapping,
  );
  check(communications.id === USER && communications.availability === "Busy", "GET /communications/presences/{id}");

  const batch = await adapter.send(
    raw(HttpMethod.POST, "/communications/getPresencesByUserId", { ids: [USER, OTHER] }, (writer, body) =>
      writer.writeCollectionOfPrimitiveValues("ids", body.ids),
    ),
    createPresenceCollectionResponseFromDiscriminatorValue,
    errorMapping,
  );
  const byId = Object.fromEntries(batch.value.map((entry) => [entry.id, `${entry.availability}/${entry.activity}`]));
  check(byId[USER] === "Busy/InACall" && byId[OTHER] === "Offline/Offline" && batch.value.length === 2, "getPresencesByUserId");

  // The signed-in user's own presence and work location (delegated only).
  const me = kiotaClient(settings.origin, settings.meToken).client.me.presence;
  const mine = await me.get();
  check(mine.id === USER && mine.availability === "Busy", "GET /me/presence");
  const location = async () => {
    const { workLocationType, source } = (await me.get()).workLocation;
    return `${workLocationType}/${source}`;
  };
  await me.setAutomaticLocation.post({ workLocationType: "remote" });
  check((await location()) === "remote/automatic", "setAutomaticLocation");
  await me.setManualLocation.post({ workLocationType: "office", placeId: "building-1" });
  check((await location()) === "office/manual", "setManualLocation overrides the automatic location");
  await me.clearAutomaticLocation.post();
  check((await location()) === "office/manual", "clearAutomaticLocation keeps the manual location");
  await me.clearLocation.post();
  check((await location()) === "unspecified/none", "clearLocation");

  await user.clearPresence.post({ sessionId: APP });
  check((await shown(USER)) === "Offline/Offline", "clearPresence of the only session");
}

/** Kiota's CompressionHandler (in its "performance" middleware chain)
 * gzips every request body and, on a 415, sends it again uncompressed: a
 * fetch that records what went out tells which happened. */
async function compressed() {
  const sent = [];
  const recording = async (url, init) => {
    const response = await fetch(url, init);
    const headers = new Headers(init?.headers);
    sent.push({ encoding: headers.get("content-encoding"), status: response.status });
    return response;
  };
  const httpClient = new HttpClient(recording, ...MiddlewareFactory.getPerformanceMiddlewares(recording));
  const gzipping = kiotaClient(settings.origin, settings.appToken, httpClient).client;
  await gzipping.users.byUserId(OTHER).presence.setPresence.post({
    sessionId: APP,
    availability: "Away",
    activity: "Away",
    expirationDuration: new Duration({ hours: 1 }),
  });
  const posts = sent.filter((request) => request.encoding !== null);
  check(
    posts.length === 1 && posts[0].encoding === "gzip" && posts[0].status === 200 && !sent.some((request) => request.status === 415),
    `Kiota's CompressionHandler: setPresence sent once, gzip-compressed, and accepted (${JSON.stringify(sent)})`,
  );
  check((await shown(OTHER)) === "Away/Away", "the gzip-compressed setPresence is applied");
}

async function errors() {
  const user = client.users.byUserId(USER).presence;
  oDataError(
    await failure(user.clearPresence.post({ sessionId: APP }), "clearing a missing session"),
    404,
    "NotFound",
    "clearPresence of a missing session",
  );
  oDataError(
    await failure(
      user.setPresence.post({
        sessionId: APP,
        availability: "Available",
        activity: "Available",
        expirationDuration: new Duration({ minutes: 1 }),
      }),
      "an expiration under five minutes",
    ),
    400,
    "InvalidArgument",
    "an out-of-range expiration",
  );
  const stranger = kiotaClient(settings.origin, settings.badToken).client;
  oDataError(
    await failure(stranger.users.byUserId(USER).presence.get(), "a token signed with another secret"),
    401,
    "InvalidAuthenticationToken",
    "a bad token",
  );
  // A server that allows two requests an hour. The SDK's retry handler
  // would wait out Retry-After (up to three minutes, three times): turned
  // off for these requests, so that the 429 reaches the caller.
  const throttled = kiotaClient(settings.throttledOrigin, settings.appToken).client.users.byUserId(USER).presence;
  const noRetry = () => ({ options: [new RetryHandlerOptions({ maxRetries: 0 })] });
  await throttled.get(noRetry());
  await throttled.get(noRetry());
  const refused = await failure(throttled.get(noRetry()), "a third request");
  oDataError(refused, 429, "TooManyRequests", "beyond --throttle-app");
  check(Number(refused.responseHeaders["retry-after"]?.[0]) >= 1, "the 429 carries Retry-After");
}

async function subscriptions() {
  const receiver = await startReceiver(settings.receiverCert, settings.receiverKey);
  const expires = new Date(Date.now() + 50 * 60 * 1000);
  expires.setMilliseconds(0);
  const created = await client.subscriptions.post({
    changeType: "updated",
    notificationUrl: receiver.url("/notify"),
    lifecycleNotificationUrl: receiver.url("/lifecycle"),
    resource: `/communications/presences?$filter=id in ('${USER}','${OTHER}')`,
    expirationDateTime: expires,
    clientState: "kiota secret",
  });
  check(
    typeof created.id === "string" && receiver.validated.includes("/notify") && receiver.validated.includes("/lifecycle"),
    "subscriptions.post after the https handshake of both URLs",
  );

  await client.users.byUserId(OTHER).presence.setPresence.post({
    sessionId: APP,
    availability: "DoNotDisturb",
    activity: "Presenting",
  });
  const [item] = await receiver.waitFor("/notify", 1);
  check(
    item.clientState === "kiota secret" && item.subscriptionId === created.id && item.resourceData.id === OTHER,
    "a notification arrived over https with clientState and subscriptionId",
  );

  const subscription = client.subscriptions.bySubscriptionId(created.id);
  const read = await subscription.get();
  check(read.id === created.id && read.changeType === "updated", "subscriptions get");
  const listed = await client.subscriptions.get();
  check(JSON.stringify(listed.value.map((entry) => entry.id)) === JSON.stringify([created.id]), "subscriptions list");
  const later = new Date(expires.getTime() + 5 * 60 * 1000);
  const renewed = await subscription.patch({ expirationDateTime: later });
  check(Math.abs(renewed.expirationDateTime - later) < 1000, "subscriptions update renews");
  await subscription.delete();
  oDataError(await failure(subscription.get(), "a deleted subscription"), 404, "NotFound", "subscriptions delete");
  await receiver.close();
}

/** setPresence for 20 users in one raw $batch request, then each user read
 * back.
 *
 * Not through msgraph-sdk-core's BatchRequestContent: in this preview its
 * convertRequestInformationToBatchItem never copies a request's headers
 * (`let headers; if (headers !== undefined) ...`), so every inner POST goes
 * without Content-Type (and its body as base64), which Graph and presenced
 * refuse with 415. A client bug; the raw request is what Graph documents. */
async function batch() {
  const users = Array.from({ length: 20 }, (_, index) => `batch-user-${index + 1}`);
  const requests = users.map((user, index) => ({
    id: String(index + 1),
    method: "POST",
    url: `/users/${user}/presence/setPresence`,
    headers: { "Content-Type": "application/json" },
    body: { sessionId: APP, availability: "Busy", activity: "InACall", expirationDuration: "PT1H" },
  }));
  const request = new RequestInformation(HttpMethod.POST, "{+baseurl}/$batch");
  request.headers.tryAdd("Accept", "application/json");
  request.setStreamContent(new TextEncoder().encode(JSON.stringify({ requests })).buffer, "application/json");
  const answer = JSON.parse(
    new TextDecoder().decode(await adapter.sendPrimitive(request, "ArrayBuffer", errorMapping)),
  );
  const statuses = users.map((_, index) => answer.responses.find((entry) => entry.id === String(index + 1))?.status);
  check(statuses.every((status) => status === 200), `each of the 20 setPresence answered 200: ${statuses}`);
  for (const user of users) {
    check((await shown(user)) === "Busy/InACall", `${user} is Busy/InACall after the batch`);
  }
}

if (part === "roundtrip") {
  await presence();
  await compressed();
  await errors();
  await subscriptions();
} else if (part === "batch") {
  await batch();
} else {
  throw new Error(`unknown part ${part}: roundtrip or batch`);
}
