// The Graph clients the JavaScript SDK scripts build: each official client
// with a fixed bearer token and presenced's address, the only change a
// Graph user makes. The legacy client also has to be told that presenced's
// host may receive the token (customHosts): it sends the token only to
// Graph's own hosts, and only over https.

import { Client } from "@microsoft/microsoft-graph-client";
import { AllowedHostsValidator, BaseBearerTokenAuthenticationProvider } from "@microsoft/kiota-abstractions";
import { createGraphServiceClient, GraphRequestAdapter } from "@microsoft/msgraph-sdk";
// The fluent API of the paths used: /users, /me and /subscriptions.
import "@microsoft/msgraph-sdk-users";
import "@microsoft/msgraph-sdk-subscriptions";

/** The legacy client (@microsoft/microsoft-graph-client 3.x): `origin` is
 * presenced's `https://host:port`; the client adds the version. */
export function legacyClient(origin, token) {
  return Client.init({
    authProvider: (done) => done(null, token),
    baseUrl: origin,
    customHosts: new Set([new URL(origin).hostname]),
  });
}

/** A token provider that always gives `token`, for any host. */
class StaticToken {
  constructor(token) {
    this.token = token;
  }
  async getAuthorizationToken() {
    return this.token;
  }
  getAllowedHostsValidator() {
    return new AllowedHostsValidator();
  }
}

/** The Kiota-based client (@microsoft/msgraph-sdk): the request adapter's
 * base URL names presenced and the version. Returns the client and its
 * adapter (raw requests go through the adapter). `httpClient`, when given,
 * replaces Kiota's default one (its middleware chain). */
export function kiotaClient(origin, token, httpClient) {
  const adapter = new GraphRequestAdapter(
    new BaseBearerTokenAuthenticationProvider(new StaticToken(token)),
    undefined,
    undefined,
    httpClient,
  );
  adapter.baseUrl = `${origin}/v1.0`;
  return { client: createGraphServiceClient(adapter), adapter };
}

/** Prints `ok: what` when `condition` holds, and throws otherwise: the
 * script's exit status is the verdict, its `ok:` lines the evidence. */
export function check(condition, what) {
  if (!condition) {
    throw new Error(`failed: ${what}`);
  }
  console.log(`ok: ${what}`);
}

/** Awaits `promise`, which must fail; returns what it threw. */
export async function failure(promise, what) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error(`failed: ${what} should have been refused`);
}

// Ids the scripts use (the same as the Python SDK's).
export const USER = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3";
export const OTHER = "66825e03-7ef5-42da-9069-724602c31f6b";
export const APP = "22553876-f5ab-4529-bffb-cfe50aa89f87";
