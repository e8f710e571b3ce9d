// The board part of presenced-bench (board.rs): drives the system's
// Chromium, headless, through playwright-core (pinned in
// crates/presenced/tests/js, installed beside this script by the harness).
//
//     node board_bench.mjs PLAN_JSON
//
// PLAN_JSON: {"chromium": "/usr/bin/chromium", "origin": "http://127.0.0.1:PORT",
// "users": 10000, "loads": 5, "idleProbes": 100, "probeEveryMs": 100,
// "burstWarmupMs": 500, "burstMs": 10000, "probeTimeoutMs": 10000,
// "stepTimeoutMs": 60000}
//
// It speaks to the harness one JSON object a line on standard output, and
// reads one word a line on standard input:
//
// 1. loads the board `loads` times, each in a fresh browser context (a cold
//    cache), and reads the page's marks: navigation start to
//    `board:first-cards` and to `board:listed`;
// 2. on the last page, sends `idleProbes` probes one at a time: a
//    setStatusMessage with a text of its own to a user whose card is on
//    screen, timed from the moment the page sends it to the animation frame
//    whose DOM update shows the text on that card (a MutationObserver on the
//    grid). The page sends the request itself (fetch, same origin, no token
//    with --auth none), so both instants are read on one clock;
// 3. prints {"ready": {...}} and waits for `go`: the harness then sends
//    setPresence to random users at a fixed rate. After `burstWarmupMs`, the
//    page measures for `burstMs`: a probe every `probeEveryMs` (spread a
//    little, never two on one card at once), every gap between animation
//    frames, and the long-animation-frame entries;
// 4. waits for `done` (the harness's load is over), checks that every card on
//    screen shows the availability presenced holds, reads the JS heap after a
//    garbage collection, and prints {"result": {...}}.
//
// Anything that fails (the page does not load, a probe is never seen, an
// uncaught error in the page) is printed as {"error": "..."} and the exit
// status is 1. When standard input closes early (the harness gave up), the
// browser is closed and the script exits.

import { createInterface } from "node:readline";

import { chromium } from "playwright-core";

const plan = JSON.parse(process.argv[2]);
const VIEWPORT = { width: 1280, height: 800 };

function say(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

// The harness's words, in order. Standard input closing before the end
// means the harness stopped: close the browser and leave.
const input = createInterface({ input: process.stdin });
const words = [];
let wanted = null;
let finished = false;
let browser = null;
input.on("line", (line) => {
  if (wanted) {
    const resolve = wanted;
    wanted = null;
    resolve(line.trim());
  } else {
    words.push(line.trim());
  }
});
input.on("close", async () => {
  if (finished) return;
  await browser?.close().catch(() => {});
  process.exit(1);
});

async function expectWord(word) {
  const line = words.length > 0 ? words.shift() : await new Promise((resolve) => (wanted = resolve));
  if (line !== word) throw new Error(`the harness said ${JSON.stringify(line)} instead of ${JSON.stringify(word)}`);
}

const args = [
  // As the browser tests start it (tests/js/browser_driver.mjs): what
  // works on a machine without a GPU, a sandbox or outside network.
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // A headless page is never hidden, but no timer or frame of it should be
  // throttled as a background one's would be, whatever the window manager.
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];

/** Opens the board in a fresh context and waits until every user is
 * counted; the page's marks and what went wrong, if anything. */
async function load() {
  const context = await browser.newContext({ viewport: VIEWPORT });
  const page = await context.newPage();
  page.setDefaultTimeout(plan.stepTimeoutMs);
  const errors = [];
  // Uncaught errors only: the console's "failed to load" lines include
  // GET /_presenced/clock's 404, which is how the page learns that the
  // clock is not the manual one.
  page.on("pageerror", (error) => errors.push(String(error)));
  const answer = await page.goto(`${plan.origin}/_presenced/board`);
  if (!answer?.ok()) throw new Error(`GET /_presenced/board answered ${answer?.status()}`);
  try {
    await page.waitForFunction(
      (users) => {
        const listed = performance.getEntriesByName("board:listed", "mark").length > 0;
        const summary = document.getElementById("summary")?.textContent ?? "";
        return listed && Number(summary.replace(/\D/g, "")) === users;
      },
      plan.users,
      { polling: 50 },
    );
  } catch (error) {
    const state = await page
      .evaluate(() => ({
        summary: document.getElementById("summary")?.textContent,
        connection: document.getElementById("connection")?.textContent,
        message: document.getElementById("message")?.textContent,
        marks: performance.getEntriesByType("mark").map((mark) => mark.name),
      }))
      .catch(() => ({}));
    throw new Error(
      `the board did not list ${plan.users} users within ${plan.stepTimeoutMs} ms (${JSON.stringify(state)}; page errors: ${JSON.stringify(errors)}): ${error.message}`,
    );
  }
  if (errors.length > 0) throw new Error(`the board reported errors while loading: ${errors.join("; ")}`);
  const marks = await page.evaluate(() => {
    const at = (name) => performance.getEntriesByName(name, "mark")[0]?.startTime ?? null;
    const navigation = performance.getEntriesByType("navigation")[0];
    return {
      firstCardsMs: at("board:first-cards"),
      listedMs: at("board:listed"),
      domContentLoadedMs: navigation?.domContentLoadedEventEnd ?? null,
      cards: document.querySelectorAll("button.card[data-user]").length,
    };
  });
  return { context, page, errors, marks };
}

/** What the page needs for the probes and the frames, installed once. */
function installProbes() {
  const grid = document.getElementById("grid");
  /** user id → the probe waiting for its card. */
  const waiting = new Map();
  const statusOf = (id) => grid.querySelector(`button.card[data-user="${CSS.escape(id)}"] .status`);
  // Every change of the cards is looked at once per batch of mutations, at
  // the end of the animation frame's callback that made it.
  new MutationObserver(() => {
    if (waiting.size === 0) return;
    const now = performance.now();
    for (const [id, probe] of waiting) {
      if (statusOf(id)?.textContent === probe.text) {
        waiting.delete(id);
        clearTimeout(probe.timer);
        probe.resolve(now - probe.sent);
      }
    }
  }).observe(grid, { subtree: true, childList: true, characterData: true });

  /** Sends one probe to `id`; resolves with its latency in milliseconds. */
  function probe(id, text, timeoutMs) {
    return new Promise((resolve, reject) => {
      const sent = performance.now();
      const fail = (why) => {
        if (waiting.get(id)?.text !== text) return;
        waiting.delete(id);
        reject(new Error(`probe ${JSON.stringify(text)} to ${id}: ${why}`));
      };
      const timer = setTimeout(() => fail(`its card did not show it within ${timeoutMs} ms`), timeoutMs);
      waiting.set(id, { text, sent, resolve, timer });
      const body = { statusMessage: { message: { content: text, contentType: "text" } } };
      fetch(`/v1.0/users/${encodeURIComponent(id)}/presence/setStatusMessage`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      }).then(
        (answer) => {
          if (!answer.ok) {
            clearTimeout(timer);
            fail(`setStatusMessage answered ${answer.status}`);
          }
        },
        (error) => {
          clearTimeout(timer);
          fail(`setStatusMessage failed: ${error.message}`);
        },
      );
    });
  }

  /** The users whose cards are wholly on screen, in grid order. */
  function visible() {
    const area = grid.getBoundingClientRect();
    return [...grid.querySelectorAll(".cell:not([hidden]) button.card[data-user]")]
      .filter((button) => {
        const card = button.getBoundingClientRect();
        return card.top >= area.top && card.bottom <= area.bottom && card.left >= area.left && card.right <= area.right;
      })
      .sort((a, b) => (a.dataset.user < b.dataset.user ? -1 : 1))
      .map((button) => button.dataset.user);
  }

  /** Records every gap between animation frames, and the long animation
   * frames, until the returned function is called; it gives the summary. */
  function watchFrames() {
    let last = null;
    let frames = 0;
    let longestGapMs = 0;
    let over50 = 0;
    let watching = true;
    const tick = (time) => {
      if (!watching) return;
      if (last !== null) {
        const gap = time - last;
        frames++;
        longestGapMs = Math.max(longestGapMs, gap);
        if (gap > 50) over50++;
      }
      last = time;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    const long = { supported: false, count: 0, longestMs: 0, longestBlockingMs: 0 };
    let observer = null;
    if (PerformanceObserver.supportedEntryTypes.includes("long-animation-frame")) {
      long.supported = true;
      observer = new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) {
          long.count++;
          long.longestMs = Math.max(long.longestMs, entry.duration);
          long.longestBlockingMs = Math.max(long.longestBlockingMs, entry.blockingDuration ?? 0);
        }
      });
      observer.observe({ type: "long-animation-frame" });
    }
    return () => {
      watching = false;
      if (observer) {
        for (const entry of observer.takeRecords()) {
          long.count++;
          long.longestMs = Math.max(long.longestMs, entry.duration);
        }
        observer.disconnect();
      }
      return { frames, longestGapMs, over50, long };
    };
  }

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  window.presencedBench = {
    visible,
    /** `count` probes one after the other, each sent a random 20 to 70 ms
     * after the last was seen (so that sending is not in step with the
     * frames). */
    async idle({ ids, count, timeoutMs }) {
      const latencies = [];
      const stop = watchFrames();
      for (let n = 0; n < count; n++) {
        await pause(20 + Math.random() * 50);
        latencies.push(await probe(ids[n % ids.length], `Idle probe ${n + 1}`, timeoutMs));
      }
      return { latencies, frames: stop() };
    },
    /** Probes every `everyMs` (give or take half of it) for `durationMs`,
     * after `warmupMs`, each to the next on-screen card with no probe
     * waiting; frames are watched meanwhile. */
    async burst({ ids, warmupMs, durationMs, everyMs, timeoutMs }) {
      await pause(warmupMs);
      const started = performance.now();
      const stop = watchFrames();
      const probes = [];
      let turn = 0;
      while (performance.now() - started < durationMs) {
        for (let k = 0; k < ids.length; k++) {
          const id = ids[(turn + k) % ids.length];
          if (!waiting.has(id)) {
            probes.push(probe(id, `Burst probe ${probes.length + 1}`, timeoutMs));
            turn += k;
            break;
          }
        }
        turn++;
        await pause(everyMs * (0.5 + Math.random()));
      }
      const frames = stop();
      const settled = await Promise.allSettled(probes);
      const failures = settled.filter((outcome) => outcome.status === "rejected").map((outcome) => outcome.reason.message);
      const latencies = settled.filter((outcome) => outcome.status === "fulfilled").map((outcome) => outcome.value);
      return { latencies, failures, frames, measuredMs: performance.now() - started };
    },
  };
}

/** Waits until every card on screen shows the availability presenced
 * holds for its user: the board kept up with the burst. */
async function checkCards(page) {
  const deadline = Date.now() + plan.probeTimeoutMs;
  let differing = [];
  while (Date.now() < deadline) {
    const shown = await page.evaluate(() =>
      [...document.querySelectorAll("#grid .cell:not([hidden]) button.card[data-user]")].map((button) => [
        button.dataset.user,
        button.dataset.availability,
      ]),
    );
    const answer = await fetch(`${plan.origin}/v1.0/communications/getPresencesByUserId`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ids: shown.map(([id]) => id) }),
    });
    if (!answer.ok) throw new Error(`getPresencesByUserId answered ${answer.status}`);
    const held = new Map((await answer.json()).value.map((presence) => [presence.id, presence.availability]));
    differing = shown.filter(([id, availability]) => held.get(id) !== availability);
    if (differing.length === 0) return shown.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `${plan.probeTimeoutMs} ms after the burst, ${differing.length} cards on screen still differ from presenced: ${JSON.stringify(differing.slice(0, 5))}`,
  );
}

/** The page's JS heap and DOM nodes after a garbage collection (CDP). */
async function heap(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send("HeapProfiler.collectGarbage");
  await cdp.send("Performance.enable");
  const { metrics } = await cdp.send("Performance.getMetrics");
  await cdp.detach();
  const metric = (name) => metrics.find((entry) => entry.name === name)?.value ?? null;
  return { usedBytes: metric("JSHeapUsedSize"), totalBytes: metric("JSHeapTotalSize"), domNodes: metric("Nodes") };
}

try {
  browser = await chromium.launch({ executablePath: plan.chromium, headless: true, args, timeout: plan.stepTimeoutMs });
  const loads = [];
  let current = null;
  for (let n = 0; n < plan.loads; n++) {
    await current?.context.close();
    current = await load();
    loads.push(current.marks);
  }
  const { context, page, errors } = current;
  const listedHeap = await heap(context, page);
  await page.evaluate(installProbes);
  const ids = await page.evaluate(() => window.presencedBench.visible());
  if (ids.length < 2) throw new Error(`only ${ids.length} cards are wholly on screen; the probes need two or more`);
  const idle = await page.evaluate((options) => window.presencedBench.idle(options), {
    ids,
    count: plan.idleProbes,
    timeoutMs: plan.probeTimeoutMs,
  });
  say({ ready: { visible: ids.length } });

  await expectWord("go");
  const burst = await page.evaluate((options) => window.presencedBench.burst(options), {
    ids,
    warmupMs: plan.burstWarmupMs,
    durationMs: plan.burstMs,
    everyMs: plan.probeEveryMs,
    timeoutMs: plan.probeTimeoutMs,
  });
  await expectWord("done");
  if (burst.failures.length > 0) {
    throw new Error(`${burst.failures.length} of ${burst.failures.length + burst.latencies.length} probes failed during the burst; the first: ${burst.failures[0]}`);
  }
  const checked = await checkCards(page);
  const burstHeap = await heap(context, page);
  if (errors.length > 0) throw new Error(`the board reported errors: ${errors.join("; ")}`);
  say({ result: { loads, visible: ids.length, checked, idle, burst, listedHeap, burstHeap } });
  finished = true;
} catch (error) {
  // playwright's call logs are coloured for a terminal; the harness
  // quotes them in its report.
  say({ error: String(error?.message ?? error).replace(/\u001b\[\d+m/g, "") });
  process.exitCode = 1;
} finally {
  finished = true;
  await browser?.close().catch(() => {});
  input.close();
}
