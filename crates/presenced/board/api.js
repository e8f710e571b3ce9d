// Calls to presenced's API, with the token the person gave, if any. The
// token lives in this tab's session storage only: never in a URL (where
// logs, history and Referer would keep it) and never in local storage
// (where it would outlive the tab).

const TOKEN_KEY = "presenced.board.token";

/** A refusal from the API: its status and the envelope's code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The token kept for this tab, or null. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Keeps `value` (without any "Bearer " the person pasted) for this tab.
 * Returns null, or what is wrong with the token: it goes in a header, where
 * only visible ASCII is allowed, and a token with anything else in it (a
 * line break, a space, a quotation mark pasted from a document) would make
 * every call fail before it left the browser. */
export function keepToken(value) {
  const trimmed = value.trim().replace(/^bearer\s+/i, "");
  const wrong = trimmed.match(/[^\x21-\x7e]/u);
  if (wrong) {
    const shown = /\s/.test(wrong[0]) ? "a space or line break" : `"${wrong[0]}"`;
    return `A token is one word of visible ASCII characters (as a JWT is); this one has ${shown} at character ${wrong.index + 1}. Paste the token alone.`;
  }
  if (trimmed) sessionStorage.setItem(TOKEN_KEY, trimmed);
  else sessionStorage.removeItem(TOKEN_KEY);
  return null;
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** The headers of every call: the token, when there is one. */
export function headers(extra = {}) {
  const all = { ...extra };
  const kept = token();
  if (kept) all.Authorization = `Bearer ${kept}`;
  return all;
}

/** The refusal an answer carries, read from Graph's error envelope. */
export async function refusal(response) {
  let code = `HTTP ${response.status}`;
  let message = response.statusText || "The request was refused.";
  try {
    const body = await response.json();
    code = body?.error?.code ?? code;
    message = body?.error?.message ?? message;
  } catch {
    // Not an envelope (a proxy's page, say): the status says enough.
  }
  return new ApiError(response.status, code, message);
}

/** Calls `path` and returns its JSON (or null for an empty body); throws
 * an ApiError for a refusal. */
export async function call(method, path, body) {
  const init = { method, headers: headers({ Accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, "Unreachable", `presenced cannot be reached (${error.message}).`);
  }
  if (!response.ok) throw await refusal(response);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** Every page of a paged list, each handed to `onPage` as it arrives,
 * while `wanted()` holds (a page that arrives after it no longer does is
 * dropped, and no further page is read). Returns whether every page was. */
export async function eachPage(path, onPage, wanted = () => true) {
  let next = path;
  while (next) {
    const page = await call("GET", next);
    if (!wanted()) return false;
    onPage(page.value);
    // The link is absolute and names this origin; only its path is used,
    // so that a proxy in front of presenced is followed through.
    const link = page["@odata.nextLink"];
    next = link ? new URL(link, location.href).pathname + new URL(link, location.href).search : null;
  }
  return true;
}
