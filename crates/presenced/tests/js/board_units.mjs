// Unit checks of the board's modules that need no browser: the words and
// countdowns it shows, the colour groups, and its Server-Sent Events parser
// fed in awkward pieces. Run by tests/api/board.rs:
//
//     node board_units.mjs BOARD_DIRECTORY
//
// Prints one line per check and "checks: N" at the end; exits non-zero on
// the first failure.

import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const board = process.argv[2];
const load = (name) => import(pathToFileURL(join(board, name)).href);
const { words, countdown, groupOf, shapeOf, GROUPS } = await load("presence.js");
const { PresenceStream } = await load("stream.js");

let checks = 0;
async function check(name, body) {
  await body();
  checks += 1;
  console.log(`ok: ${name}`);
}

await check("enum values in words", () => {
  assert.equal(words("DoNotDisturb"), "Do not disturb");
  assert.equal(words("BeRightBack"), "Be right back");
  assert.equal(words("InAConferenceCall"), "In a conference call");
  assert.equal(words("AvailableInactive"), "Available inactive");
  assert.equal(words("AvailableIdle"), "Available, idle");
  assert.equal(words("OffWork"), "Off work");
  assert.equal(words("UrgentInterruptionsOnly"), "Urgent interruptions only");
  assert.equal(words("strongestSession"), "strongest session");
  assert.equal(words(""), "");
});

await check("countdowns", () => {
  assert.equal(countdown(0), "now");
  assert.equal(countdown(-5), "now");
  assert.equal(countdown(1), "1 s");
  assert.equal(countdown(299_000), "4 min 59 s");
  assert.equal(countdown(300_000), "5 min 0 s");
  assert.equal(countdown(3_600_000), "1 h 0 min");
  assert.equal(countdown(90_061_000), "1 d 1 h");
});

await check("every availability has a colour group and a shape", () => {
  const groups = new Set(GROUPS.map((group) => group.id));
  const expected = {
    Available: "available",
    AvailableIdle: "available",
    Busy: "busy",
    BusyIdle: "busy",
    DoNotDisturb: "busy",
    Away: "away",
    BeRightBack: "away",
    Offline: "offline",
    PresenceUnknown: "offline",
  };
  for (const [availability, group] of Object.entries(expected)) {
    assert.equal(groupOf(availability), group, availability);
    assert.ok(groups.has(groupOf(availability)));
    assert.match(shapeOf(availability), /^shape-/);
  }
  assert.equal(shapeOf("DoNotDisturb"), "shape-dnd");
  assert.notEqual(shapeOf("Busy"), shapeOf("DoNotDisturb"));
});

/** What a stream's body gives when it arrives in `chunks` (strings, or
 * bytes as Uint8Array): its presences and resets, in order. `before` is the
 * id the stream resumed from; `abortAfter` stops the stream after that many
 * presences. */
async function parse(chunks, { before = null, abortAfter = Infinity } = {}) {
  const events = [];
  const told = [];
  const controller = new AbortController();
  const stream = new PresenceStream("/unused", {
    onOpen() {},
    onEvent: (presence) => {
      events.push(presence);
      told.push(`presence ${presence.id}`);
      if (events.length >= abortAfter) controller.abort();
    },
    onReset: () => told.push("reset"),
    onState() {},
    onDown() {},
    onRefused() {},
  });
  stream.lastEventId = before;
  const encoder = new TextEncoder();
  const body = new ReadableStream({
    start(body) {
      for (const chunk of chunks) body.enqueue(typeof chunk === "string" ? encoder.encode(chunk) : chunk);
      body.close();
    },
  });
  await stream.read(body, controller.signal);
  return { events, stream, told };
}

await check("events split anywhere, with CRLF, comments, retry and ids", async () => {
  const text =
    "retry: 1500\r\n\r\n" +
    ": a comment\n" +
    'event: presence\r\nid: 7-1\r\ndata: {"id":"alice",\r\ndata: "availability":"Busy"}\r\n\r\n' +
    "event: presence\nid: 7-2\ndata:{\"id\":\"bob\"}\n\n" +
    "event: other\nid: 7-3\ndata: {\"id\":\"carol\"}\n\n";
  // Every split point, including between a CR and its LF.
  for (let at = 0; at <= text.length; at++) {
    const { events, stream } = await parse([text.slice(0, at), text.slice(at)]);
    assert.deepEqual(
      events,
      [{ id: "alice", availability: "Busy" }, { id: "bob" }],
      `split at ${at}`,
    );
    assert.equal(stream.retry, 1500);
    assert.equal(stream.lastEventId, "7-3", "the last id seen, whatever its event");
  }
  // One byte at a time.
  const { events } = await parse([...text]);
  assert.equal(events.length, 2);
});

await check("an event that is not JSON is skipped, and the stream goes on", async () => {
  const { events } = await parse([
    "event: presence\ndata: {not json\n\n",
    "event: presence\ndata: {\"id\":\"dave\"}\n\n",
    "event: presence\ndata: {\"id\":\"unfinished\"}\n",
  ]);
  assert.deepEqual(events, [{ id: "dave" }], "an event without its blank line is not dispatched");
});

await check("a character of several bytes split between chunks", async () => {
  // "Zoë in Kraków 🚲": two- and four-byte characters.
  const text = 'event: presence\nid: 7-1\ndata: {"id":"zoe","message":"Zoë in Kraków 🚲"}\n\n';
  const bytes = new TextEncoder().encode(text);
  for (let at = 0; at <= bytes.length; at++) {
    const { events } = await parse([bytes.slice(0, at), bytes.slice(at)]);
    assert.deepEqual(events, [{ id: "zoe", message: "Zoë in Kraków 🚲" }], `split at byte ${at}`);
  }
  const { events } = await parse([...bytes].map((byte) => new Uint8Array([byte])));
  assert.equal(events[0].message, "Zoë in Kraków 🚲", "one byte at a time");
});

await check("an id of another epoch resets before the presences that follow it", async () => {
  const opening = "id: 9-0\nretry: 1000\n\n";
  const presences = 'event: presence\nid: 9-0\ndata: {"id":"alice"}\n\nevent: presence\nid: 9-1\ndata: {"id":"bob"}\n\n';
  const restarted = await parse([opening + presences], { before: "7-3" });
  assert.deepEqual(restarted.told, ["reset", "presence alice", "presence bob"]);
  assert.equal(restarted.stream.lastEventId, "9-1");
  const same = await parse(["id: 7-3\nretry: 1000\n\n", 'event: presence\nid: 7-4\ndata: {"id":"alice"}\n\n'], {
    before: "7-3",
  });
  assert.deepEqual(same.told, ["presence alice"], "the same epoch resumes without a reset");
  const fresh = await parse([opening + presences]);
  assert.deepEqual(fresh.told, ["presence alice", "presence bob"], "a first connection has nothing to reset");
  // A multi-partition cursor (several nodes over Redis) has the same epoch.
  const partitioned = await parse(['event: presence\nid: a1-5.9.2\ndata: {"id":"carol"}\n\n'], { before: "a1-4.9.2" });
  assert.deepEqual(partitioned.told, ["presence carol"]);
});

await check("a stopped stream tells nothing more", async () => {
  const text = ["alice", "bob", "carol"].map((id, index) => `event: presence\nid: 7-${index}\ndata: {"id":"${id}"}\n\n`).join("");
  const { told } = await parse([text], { abortAfter: 1 });
  assert.deepEqual(told, ["presence alice"]);
});

console.log(`checks: ${checks}`);
