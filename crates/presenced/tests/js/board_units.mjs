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

/** The events a stream's body gives when it arrives in `chunks`. */
async function parse(chunks) {
  const events = [];
  const stream = new PresenceStream("/unused", {
    onOpen() {},
    onEvent: (presence) => events.push(presence),
    onState() {},
    onRefused() {},
  });
  const encoder = new TextEncoder();
  const body = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
  await stream.read(body, new AbortController().signal);
  return { events, stream };
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

console.log(`checks: ${checks}`);
