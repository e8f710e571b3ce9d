// The tenant's live stream, read with fetch rather than EventSource: an
// EventSource cannot send an Authorization header, and the alternatives
// (the token in the URL, or a cookie) would put it in logs or make every
// request from this origin carry it. fetch sends the header, and its body
// is read as it arrives. The Server-Sent Events format is parsed here by
// hand: it is a few lines (fields up to a blank line), and the browser's
// own parser is reachable only through EventSource.

import { headers, refusal } from "./api.js";

/**
 * Keeps a stream open, reconnecting after the wait the server asks for
 * (its `retry:` field) and resuming with `Last-Event-ID`. presenced names
 * an id on a stream's opening event, so a connection dropped before any
 * presence still resumes without a gap.
 *
 * Callbacks, none of which runs once the stream is stopped:
 * - `onOpen({ resumed })` each time a connection is established, before its
 *   events; `resumed` says whether it resumes an earlier one (when it does
 *   not, what changed before it is not in the stream);
 * - `onEvent(presence)` for every `presence` event;
 * - `onReset()` when an event id names another epoch than the one resumed
 *   (presenced restarted, or its memory store was lost): what was shown is
 *   not comparable with what follows, and the stream sends every presence
 *   again;
 * - `onState(text)` when the connection changes;
 * - `onDown(error)` when presenced answers but does not stream (503 when
 *   it holds its most streams, say): it is asked again after its wait;
 * - `onRefused(error)` when the server refuses the stream (401, 403): the
 *   stream then stops until `start()`.
 */
export class PresenceStream {
  constructor(path, { onOpen, onEvent, onReset, onState, onDown, onRefused }) {
    this.path = path;
    this.callbacks = { onOpen, onEvent, onReset, onState, onDown, onRefused };
    this.lastEventId = null;
    this.retry = 2000;
    this.controller = null;
  }

  start() {
    this.stop();
    this.controller = new AbortController();
    this.run(this.controller.signal);
  }

  stop() {
    this.controller?.abort();
    this.controller = null;
  }

  /** Calls back, unless the stream that called was stopped since. */
  tell(signal, name, ...values) {
    if (!signal.aborted) this.callbacks[name](...values);
  }

  async run(signal) {
    while (!signal.aborted) {
      try {
        const extra = { Accept: "text/event-stream" };
        const resumed = Boolean(this.lastEventId);
        if (resumed) extra["Last-Event-ID"] = this.lastEventId;
        const response = await fetch(this.path, { headers: headers(extra), signal, cache: "no-store" });
        if (response.status === 401 || response.status === 403) {
          this.tell(signal, "onRefused", await refusal(response));
          return;
        }
        if (!response.ok) {
          const error = await refusal(response);
          const after = Number(response.headers.get("Retry-After"));
          if (after > 0) this.retry = after * 1000;
          this.tell(signal, "onState", `Live updates paused: ${error.message}`);
          this.tell(signal, "onDown", error);
        } else {
          this.tell(signal, "onState", "Live");
          this.tell(signal, "onOpen", { resumed });
          await this.read(response.body, signal);
          this.tell(signal, "onState", "Reconnecting…");
        }
      } catch {
        this.tell(signal, "onState", "Reconnecting…");
      }
      if (signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, this.retry));
    }
  }

  /** Reads events until the body ends. */
  async read(body, signal) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = { type: "message", data: [], id: null };
    while (!signal.aborted) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.search(/\r\n|\r|\n/)) >= 0) {
        // A lone CR at the end may be the first half of a CRLF.
        if (end === buffer.length - 1 && buffer[end] === "\r") break;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
        if (line === "") {
          if (signal.aborted) return;
          this.dispatch(event, signal);
          event = { type: "message", data: [], id: null };
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "event") event.type = text;
          else if (field === "data") event.data.push(text);
          else if (field === "id") event.id = text;
          else if (field === "retry" && /^\d+$/.test(text)) this.retry = Number(text);
        }
      }
    }
  }

  dispatch(event, signal) {
    if (event.id !== null) {
      if (this.lastEventId && epochOf(event.id) !== epochOf(this.lastEventId)) {
        this.tell(signal, "onReset");
      }
      this.lastEventId = event.id;
    }
    if (event.type !== "presence" || event.data.length === 0) return;
    let presence;
    try {
      presence = JSON.parse(event.data.join("\n"));
    } catch {
      // An event that is not a presence is skipped, not fatal.
      return;
    }
    this.tell(signal, "onEvent", presence);
  }
}

/** The epoch an event id names: presenced writes ids as
 * `{epoch}-{offsets}`, and a new epoch's offsets start again. */
export function epochOf(id) {
  const dash = id.indexOf("-");
  return dash < 0 ? id : id.slice(0, dash);
}
