// One user's detail: the sessions behind the presence, the rule that
// decided it, and live countdowns to the next fade and each expiry ("why
// is she shown Busy, and until when"), from /_presenced/users/{id}/sessions.
//
// Countdowns run on the server's clock: each answer carries the server's
// `now`, and the page counts from it with its own clock, except with the
// manual clock, which moves only when advanced (the page then asks again).

import { call } from "./api.js";
import { countdown, isOutOfOffice, locationWords, shapeOf, statusText, symbol, words } from "./presence.js";

const RULES = {
  userPreferredPresence: "The presence the user chose (user-preferred presence) decides it, while any session exists.",
  strongestSession: "The strongest session decides it (Do not disturb, then Busy, then Available, then Away; the latest wins a tie).",
  noSession: "No session is live, so the user is shown Offline.",
};

/** Shortcuts for building elements with text only (never markup). */
function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

export class Detail {
  /** `dialog` is the page's <dialog>; `manualClock()` says whether the
   * server's clock is the manual one; `onClose(user, returnFocus)` runs on
   * closing, with what `open` was given to put the focus back. */
  constructor(dialog, { manualClock, onClose }) {
    this.dialog = dialog;
    this.manualClock = manualClock;
    this.onClose = onClose;
    this.body = dialog.querySelector("#detail-body");
    this.title = dialog.querySelector("#detail-title");
    this.user = null;
    this.answer = null;
    this.serverNow = 0;
    this.localAt = 0;
    this.timer = null;
    this.loading = null;
    this.again = false;
    this.returnFocus = null;
    this.dueRead = 0;
    dialog.querySelector("#detail-close").addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      clearInterval(this.timer);
      this.timer = null;
      clearTimeout(this.dueRead);
      this.dueRead = 0;
      const user = this.user;
      const returnFocus = this.returnFocus;
      this.user = null;
      this.returnFocus = null;
      this.onClose(user, returnFocus);
    });
  }

  /** Opens the detail of `user`, whose presence the board shows as
   * `presence`; `returnFocus()`, if given, puts the focus back on closing. */
  async open(user, presence, returnFocus = null) {
    this.user = user;
    this.returnFocus = returnFocus;
    this.presence = presence;
    this.answer = null;
    this.title.textContent = user;
    this.body.replaceChildren(element("p", "Loading…"));
    if (!this.dialog.open) this.dialog.showModal();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), 1000);
    await this.refresh();
  }

  /** Reads the sessions again (after a change of the user, or a clock
   * advance). One read at a time: changes that arrive during a read cause
   * one more read after it, not one each. */
  async refresh(presence) {
    if (!this.user) return;
    if (presence) this.presence = presence;
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = this.load();
    try {
      await this.loading;
    } finally {
      this.loading = null;
    }
    if (this.again) {
      this.again = false;
      await this.refresh();
    }
  }

  async load() {
    const user = this.user;
    try {
      const answer = await call("GET", `/_presenced/users/${encodeURIComponent(user)}/sessions`);
      if (user !== this.user) return;
      this.answer = answer;
      this.serverNow = Date.parse(answer.now);
      this.localAt = Date.now();
      this.draw();
    } catch (error) {
      if (user !== this.user) return;
      this.body.replaceChildren(element("p", `The sessions cannot be read: ${error.message}`, "problem"));
    }
  }

  /** The server's now, in milliseconds. */
  now() {
    return this.manualClock() ? this.serverNow : this.serverNow + (Date.now() - this.localAt);
  }

  /** A <time> counting down to `instant` (text), or "never" for null. */
  countdownTo(instant) {
    if (!instant) return element("span", "never");
    const time = element("time", "", "countdown");
    time.dateTime = instant;
    time.dataset.at = String(Date.parse(instant));
    time.title = new Date(instant).toLocaleString();
    this.writeCountdown(time);
    return time;
  }

  /** Writes what is left; returns whether the countdown reached zero now
   * (not when it was drawn already due). */
  writeCountdown(time) {
    const left = Number(time.dataset.at) - this.now();
    time.textContent = left > 0 ? `in ${countdown(left)}` : "due now";
    if (left > 0 || time.dataset.due) return false;
    time.dataset.due = "true";
    return true;
  }

  /** Counts down; when a countdown reaches zero, the sessions are read
   * again (a session that faded or expired changes the table even when it
   * does not change the presence, so no stream event would say so). */
  tick() {
    if (!this.answer) return;
    let due = false;
    for (const time of this.body.querySelectorAll("time.countdown")) {
      if (this.writeCountdown(time)) due = true;
    }
    if (due && !this.dueRead) {
      // A moment after zero, for the server to be past the instant too.
      this.dueRead = setTimeout(() => {
        this.dueRead = 0;
        this.refresh();
      }, 300);
    }
  }

  draw() {
    const answer = this.answer;
    const presence = this.presence;
    const parts = [];

    const shown = element("p", "", "detail-presence");
    shown.append(symbol(shapeOf(answer.availability), `shape avail-${answer.availability}`));
    shown.append(element("strong", words(answer.availability)), element("span", ` · ${words(answer.activity)}`));
    parts.push(shown);

    const facts = element("dl", undefined, "facts");
    const fact = (term, value) => {
      facts.append(element("dt", term));
      const description = element("dd");
      description.append(value);
      facts.append(description);
    };
    const decided = element("span", RULES[answer.decidedBy.rule] ?? answer.decidedBy.rule);
    decided.id = "decided-by";
    fact("Why", decided);
    const next = element("span");
    next.id = "next-change";
    next.append(this.countdownTo(answer.nextChangeDateTime));
    fact("Changes by itself", next);
    if (presence) {
      const message = statusText(presence);
      if (message) fact("Status message", element("span", message, "status-text"));
      if (isOutOfOffice(presence)) {
        const text = presence.outOfOfficeSettings.message;
        fact("Out of office", element("span", text ? `Yes: ${text}` : "Yes"));
      }
      const location = locationWords(presence);
      if (location) fact("Work location", element("span", location));
    }
    const preferred = answer.userPreferredPresence;
    if (preferred) {
      const value = element("span", `${words(preferred.availability)} · ${words(preferred.activity)}, `);
      value.append(preferred.inEffect ? "in effect, " : "not in effect (no session), ", "ends ");
      value.append(this.countdownTo(preferred.expirationDateTime));
      fact("Chosen by the user", value);
    }
    parts.push(facts);

    parts.push(element("h3", `Sessions (${answer.sessions.length})`));
    if (answer.sessions.length === 0) {
      parts.push(element("p", "No live session."));
    } else {
      const table = element("table", undefined, "sessions");
      const caption = element("caption", "Live sessions, strongest first");
      const head = element("thead");
      const headRow = element("tr");
      for (const name of ["Session", "Set to", "Shows now", "Stage", "Next fade", "Expires"]) {
        const cell = element("th", name);
        cell.scope = "col";
        headRow.append(cell);
      }
      head.append(headRow);
      const rows = element("tbody");
      for (const session of answer.sessions) {
        const row = element("tr", undefined, session.decidesPresence ? "decides" : "");
        const id = element("th", undefined);
        id.scope = "row";
        id.append(element("span", session.sessionId, "session-id"));
        id.append(element("span", session.kind === "legacy" ? " (legacy)" : "", "muted"));
        if (session.decidesPresence) id.append(element("span", "Decides", "decides-mark"));
        row.append(id);
        row.append(element("td", `${words(session.setAvailability)} · ${words(session.setActivity)}`));
        row.append(element("td", `${words(session.availability)} · ${words(session.activity)}`));
        row.append(element("td", words(session.stage)));
        const fade = element("td");
        fade.append(this.countdownTo(session.nextFadeDateTime));
        row.append(fade);
        const expiry = element("td");
        expiry.append(this.countdownTo(session.expirationDateTime));
        row.append(expiry);
        rows.append(row);
      }
      table.append(caption, head, rows);
      // A region of its own that scrolls sideways on a narrow screen, and
      // so takes focus, for a keyboard to scroll it.
      const scroller = element("div", undefined, "table-scroll");
      scroller.tabIndex = 0;
      scroller.setAttribute("role", "region");
      scroller.setAttribute("aria-label", "Sessions");
      scroller.append(table);
      parts.push(scroller);
    }
    this.body.replaceChildren(...parts);
  }
}
