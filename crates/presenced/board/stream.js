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
 * (its `retry:` field) and resuming with `Last-Event-ID`.
 *
 * `onOpen()` runs each time a connection is established (before any of its
 * events), `onEvent(presence)` for every `presence` event, `onState(text)`
 * when the connection changes, and `onRefused(error)` when the server
 * refuses the stream (401, 403): the stream then stops until `start()`.
 */
export class PresenceStream {
  constructor(path, { onOpen, onEvent, onState, onRefused }) {
    this.path = path;
    this.onOpen = onOpen;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onRefused = onRefused;
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

  async run(signal) {
    while (!signal.aborted) {
      try {
        const extra = { Accept: "text/event-stream" };
        if (this.lastEventId) extra["Last-Event-ID"] = this.lastEventId;
        const response = await fetch(this.path, { headers: headers(extra), signal, cache: "no-store" });
        if (response.status === 401 || response.status === 403) {
          this.onRefused(await refusal(response));
          return;
        }
        if (!response.ok) {
          const error = await refusal(response);
          const after = Number(response.headers.get("Retry-After"));
          if (after > 0) this.retry = after * 1000;
          this.onState(`Live updates paused: ${error.message}`);
        } else {
          this.onState("Live");
          this.onOpen();
          await this.read(response.body, signal);
          if (!signal.aborted) this.onState("Reconnecting…");
        }
      } catch (error) {
        if (signal.aborted) return;
        this.onState("Reconnecting…");
      }
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
          this.dispatch(event);
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

  dispatch(event) {
    if (event.id !== null) this.lastEventId = event.id;
    if (event.type !== "presence" || event.data.length === 0) return;
    try {
      this.onEvent(JSON.parse(event.data.join("\n")));
    } catch {
      // An event that is not a presence is skipped, not fatal.
    }
  }
}
