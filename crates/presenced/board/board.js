// The board: every user of the tenant as a card, live.
//
// Data: the tenant's stream (stream.js) is opened first; once it is open,
// the list of users (/_presenced/users) is read page by page. Both give
// presences, and for each user the one with the higher sequenceNumber is
// kept, so that nothing read before the stream opened can hide a change it
// brought.
//
// Lifecycle: the list is read again whenever the stream opens without
// resuming (what changed before it is not in the stream), and is retried,
// waiting longer each time, until one read completes; while presenced
// does not stream (503), the list alone is shown. When presenced restarts
// without its data, sequence numbers start again: the stream says so (an
// event id of a new epoch) and sends every presence again, and the board
// drops what it showed. Each read of the list belongs to one run, and a
// newer run (or a new token) makes an older one's answers count for
// nothing.
//
// Bursts: presences from the stream and the list are queued and applied
// once per animation frame, the newest per user, so that a thousand events
// a second cost one layout a frame, not a thousand.

import { ApiError, call, eachPage, forgetToken, keepToken, token } from "./api.js";
import { Detail } from "./detail.js";
import { VirtualGrid } from "./grid.js";
import { GROUPS, groupOf, isOutOfOffice, locationWords, shapeOf, statusText, symbol, words } from "./presence.js";
import { PresenceStream } from "./stream.js";

const $ = (id) => document.getElementById(id);

const board = {
  /** Every user shown: id → presence. */
  presences: new Map(),
  /** Their ids, sorted. */
  ids: [],
  /** Presences not applied yet: id → the newest. */
  pending: new Map(),
  frame: 0,
  /** The colour groups asked for; empty means all. */
  groups: new Set(),
  query: "",
  /** The page says whether presenced runs the manual clock. */
  manualClock: document.body.dataset.clock === "manual",
  /** Whether a read of the list has completed since the board started. */
  listed: false,
  /** The latest read of the list; an older one's pages are dropped. */
  loadRun: 0,
  /** The retry of a failed read, and how long the next one waits. */
  listRetry: 0,
  listWait: 1000,
  painted: false,
};

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function newer(old, presence) {
  return !old || presence.sequenceNumber > old.sequenceNumber;
}

function matches(id, presence) {
  if (board.groups.size > 0 && !board.groups.has(groupOf(presence.availability))) return false;
  if (!board.query) return true;
  const query = board.query;
  return (
    id.toLowerCase().includes(query) ||
    statusText(presence).toLowerCase().includes(query) ||
    words(presence.availability).toLowerCase().includes(query) ||
    words(presence.activity).toLowerCase().includes(query) ||
    locationWords(presence).toLowerCase().includes(query)
  );
}

/** Queues a presence for the next frame. */
function queue(presence) {
  const waiting = board.pending.get(presence.id);
  if (newer(waiting, presence)) board.pending.set(presence.id, presence);
  if (!board.frame) board.frame = requestAnimationFrame(flush);
}

/** The index where `id` belongs in the sorted ids. */
function place(id) {
  let low = 0;
  let high = board.ids.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (board.ids[middle] < id) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Applies what was queued, then draws once. */
function flush() {
  board.frame = 0;
  let regroup = false;
  for (const [id, presence] of board.pending) {
    const old = board.presences.get(id);
    if (!newer(old, presence)) continue;
    board.presences.set(id, presence);
    if (!old) {
      board.ids.splice(place(id), 0, id);
      regroup = true;
    } else if (matches(id, old) !== matches(id, presence)) {
      regroup = true;
    }
    if (detail.user === id) detail.refresh(presence);
  }
  board.pending.clear();
  if (regroup) refilter(false);
  else grid.render();
  count();
  if (!board.painted && board.presences.size > 0) {
    board.painted = true;
    performance.mark("board:first-cards");
  }
}

/** Chooses the cards to show again (after a search, a filter or a change
 * of membership); `announce` tells screen readers the new count. */
function refilter(announce) {
  const shown = board.ids.filter((id) => matches(id, board.presences.get(id)));
  grid.setItems(shown);
  const total = board.ids.length;
  const summary = board.groups.size === 0 && !board.query
    ? `${total.toLocaleString()} users`
    : `${shown.length.toLocaleString()} of ${total.toLocaleString()} users`;
  $("summary").textContent = summary;
  if (announce) $("announce").textContent = `Showing ${summary}.`;
  const lookup = $("lookup");
  const wanted = board.query.trim();
  lookup.hidden = !wanted || board.presences.has(wanted) || [...board.presences.keys()].some((id) => id.toLowerCase() === wanted);
  $("lookup-id").textContent = wanted;
  $("empty").hidden = shown.length > 0 || !board.listed;
}

/** The number of users in each colour group, on the filter buttons. */
function count() {
  const counts = Object.fromEntries(GROUPS.map((group) => [group.id, 0]));
  for (const presence of board.presences.values()) counts[groupOf(presence.availability)]++;
  for (const group of GROUPS) {
    const text = counts[group.id].toLocaleString();
    const target = $(`count-${group.id}`);
    if (target.textContent !== text) target.textContent = text;
  }
}

/** Draws one card: shape, availability and activity in words, the id, the
 * status message and the marks. All text is set as text. The card's name
 * for screen readers is its text, with unseen commas between the parts. */
function renderCard(button, id, presence) {
  const availability = presence.availability;
  button.className = `card group-${groupOf(availability)}`;
  button.dataset.availability = availability;
  const pause = () => element("span", ", ", "visually-hidden");
  const head = element("span", undefined, "card-head");
  head.append(
    symbol(shapeOf(availability), `shape avail-${availability}`),
    element("span", words(availability), "availability"),
    element("span", words(presence.activity), "activity"),
  );
  const parts = [head, pause(), element("span", id, "user")];
  const message = statusText(presence);
  if (message) parts.push(pause());
  parts.push(element("span", message, message ? "status" : "status empty"));
  const marks = element("span", undefined, "marks");
  if (isOutOfOffice(presence)) {
    const ooo = element("span", undefined, "ooo");
    ooo.append(symbol("shape-ooo", "shape"), "Out of office");
    marks.append(pause(), ooo);
  }
  const location = locationWords(presence);
  if (location) marks.append(pause(), element("span", location, "location"));
  parts.push(marks);
  button.replaceChildren(...parts);
}

const grid = new VirtualGrid($("grid"), {
  presenceOf: (id) => board.presences.get(id),
  renderCard,
  onOpen: (id) => detail.open(id, board.presences.get(id)),
});

const detail = new Detail($("detail"), {
  manualClock: () => board.manualClock,
  onClose: (_user, returnFocus) => (returnFocus ? returnFocus() : grid.focusActive()),
});

function setConnection(text) {
  $("connection").textContent = text;
}

const stream = new PresenceStream("/_presenced/stream", {
  onOpen: ({ resumed }) => {
    if (!resumed || !board.listed) load();
  },
  onEvent: queue,
  onReset: reset,
  onState: setConnection,
  // No live updates for now: the list at least, once.
  onDown: () => {
    if (!board.listed) load();
  },
  onRefused: refuse,
});

/** Makes every read of the list under way, and its retry, count for nothing. */
function cancelLoads() {
  board.loadRun += 1;
  clearTimeout(board.listRetry);
  board.listRetry = 0;
}

/** Reads the tenant's users, page by page (once the stream is open, or
 * when presenced does not stream); a failed read is tried again. */
async function load() {
  cancelLoads();
  const run = board.loadRun;
  const wanted = () => run === board.loadRun;
  try {
    const complete = await eachPage("/_presenced/users?$top=1000", (page) => page.forEach(queue), wanted);
    if (!complete) return;
    board.listed = true;
    board.listWait = 1000;
    show("");
    performance.mark("board:listed");
    if (board.presences.size === 0 && board.pending.size === 0) {
      $("empty").hidden = false;
      $("summary").textContent = "0 users";
    }
    await findClock();
  } catch (error) {
    if (!wanted()) return;
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      refuse(error);
      return;
    }
    const wait = board.listWait;
    board.listWait = Math.min(2 * wait, 16000);
    show(`The users cannot be read: ${error.message} Trying again in ${Math.round(wait / 1000)} s.`);
    board.listRetry = setTimeout(() => {
      if (wanted()) load();
    }, wait);
  }
}

/** presenced restarted without its data: what the board shows is dropped,
 * and the stream, which sends every presence again, fills it anew. */
function reset() {
  cancelLoads();
  board.presences.clear();
  board.ids = [];
  board.pending.clear();
  board.listed = true;
  show("");
  refilter(false);
  count();
  if (detail.user) detail.refresh();
}

/** Shows the clock's buttons when presenced runs with the manual clock
 * (the page says so: presenced serves it so). */
async function findClock() {
  if (document.body.dataset.clock !== "manual") return;
  try {
    const clock = await call("GET", "/_presenced/clock");
    showClock(clock.now);
    $("clock").hidden = false;
    $("detail-clock").hidden = false;
  } catch {
    // Not ours to move (403: with tokens, only from the server's own
    // machine): no buttons, but the countdowns still follow the manual clock.
    $("clock").hidden = true;
    $("detail-clock").hidden = true;
  }
}

function showClock(now) {
  const time = $("clock-now");
  time.dateTime = now;
  time.textContent = `${now.slice(0, 10)} ${now.slice(11, 19)} UTC`;
}

async function advance(by, button) {
  for (const other of document.querySelectorAll("button[data-by]")) other.disabled = true;
  try {
    const clock = await call("POST", "/_presenced/clock/advance", { by });
    showClock(clock.now);
    await detail.refresh();
  } catch (error) {
    show(`The clock did not move: ${error.message}`);
  } finally {
    for (const other of document.querySelectorAll("button[data-by]")) other.disabled = false;
    button.focus();
  }
}

/** A message about a problem, in the page's alert. */
function show(text) {
  const message = $("message");
  message.textContent = text;
  message.hidden = !text;
}

/** The server refused the token (401) or what it allows (403): ask for one. */
function refuse(error) {
  stream.stop();
  cancelLoads();
  if (detail.dialog.open) detail.dialog.close();
  const hint = error.status === 401
    ? token()
      ? "presenced refused this token. Paste another one."
      : "presenced needs a token to show this tenant. Paste one to continue."
    : "This token may not read the whole tenant (it needs Presence.Read.All). Paste another one.";
  $("token-message").textContent = `${hint} (${error.status} ${error.code}: ${error.message})`;
  $("token-panel").hidden = false;
  $("board").hidden = true;
  $("forget-token").hidden = !token();
  $("token-input").focus();
  setConnection("Not connected");
}

/** (Re)starts with the token kept for this tab, if any. */
function start() {
  cancelLoads();
  board.listWait = 1000;
  board.presences.clear();
  board.ids = [];
  board.pending.clear();
  board.listed = false;
  $("token-panel").hidden = true;
  $("board").hidden = false;
  $("forget-token").hidden = !token();
  show("");
  setConnection("Connecting…");
  refilter(false);
  stream.lastEventId = null;
  stream.start();
}

function controls() {
  const filters = $("filters");
  for (const group of GROUPS) {
    const button = element("button", undefined, `filter group-${group.id}`);
    button.type = "button";
    button.dataset.group = group.id;
    button.setAttribute("aria-pressed", "false");
    button.append(symbol(group.shape, `shape avail-${group.id}`), element("span", group.label));
    const number = element("span", "0", "count");
    number.id = `count-${group.id}`;
    button.append(number);
    button.addEventListener("click", () => {
      const on = !board.groups.has(group.id);
      if (on) board.groups.add(group.id);
      else board.groups.delete(group.id);
      button.setAttribute("aria-pressed", String(on));
      refilter(true);
    });
    filters.append(button);
  }
  $("search").addEventListener("input", (event) => {
    board.query = event.target.value.trim().toLowerCase();
    refilter(true);
  });
  $("lookup").addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = $("search").value.trim();
    try {
      const presence = await call("GET", `/v1.0/users/${encodeURIComponent(id)}/presence`);
      show("");
      // Closed, the detail gives the focus back to the lookup.
      detail.open(presence.id, presence, () => {
        const button = $("lookup").querySelector("button");
        ($("lookup").hidden ? $("search") : button).focus();
      });
    } catch (error) {
      show(`${id} cannot be looked up: ${error.message}`);
    }
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const problem = keepToken($("token-input").value);
    if (problem) {
      $("token-message").textContent = problem;
      $("token-input").focus();
      return;
    }
    $("token-input").value = "";
    start();
  });
  $("forget-token").addEventListener("click", () => {
    forgetToken();
    stream.stop();
    refuse(new ApiError(401, "InvalidAuthenticationToken", "The token was forgotten."));
  });
  // The detail is modal: it has the clock's buttons too, so that its
  // countdowns can be moved while it is open.
  $("detail-clock").append($("clock").querySelector(".clock-buttons").cloneNode(true));
  for (const button of document.querySelectorAll("button[data-by]")) {
    button.addEventListener("click", () => advance(button.dataset.by, button));
  }
  $("skip").addEventListener("click", (event) => {
    event.preventDefault();
    grid.focusActive();
  });
}

controls();
start();
