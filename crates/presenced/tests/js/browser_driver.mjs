// Drives the system's Chromium, headless, through playwright-core (which
// downloads no browser of its own), for the browser tests (browser.rs).
// Usage:
//
//     node browser_driver.mjs PLAN_JSON
//
// PLAN_JSON: {"chromium": "/usr/bin/chromium", "trust": [PEM files],
// "timeoutSeconds": 30, "pages": [{"steps": [STEP, ...]}, ...]}, where a
// STEP is one of
//   {"goto": URL}                 load a page
//   {"waitFor": SELECTOR}         wait until an element matches
//   {"text": SELECTOR}            the element's text content (a result)
//   {"click": SELECTOR}
//   {"fill": [SELECTOR, VALUE]}
//   {"press": [SELECTOR, KEY]}
//   {"screenshot": PATH}          a PNG of the page
//   {"waitForText": [SELECTOR, TEXT]}  wait until the element's text holds TEXT
//   {"waitForChange": SELECTOR}   wait until the element's text differs from
//                                 what it was when the step began
//   {"count": SELECTOR}           how many elements match (a result)
//   {"attribute": [SELECTOR, NAME]}  an attribute's value (a result)
//   {"key": KEY}                  press a key wherever the focus is
//   {"focused": true}             the focused element, as
//                                 "tag#id.class[data-user=...]: text" (a result)
//   {"eval": EXPRESSION}          the expression's value in the page, as JSON
//                                 (a result)
//   {"axe": true}                 axe-core's violations on the page as JSON
//                                 [{"id","impact","help","targets"}] (a result)
//   {"request": {"method", "url", "headers", "body"}}
//                                 an HTTP request made by the driver, not the
//                                 page (so the test can change presenced while
//                                 the page is open); its status (a result)
//   {"viewport": [WIDTH, HEIGHT]} resize the page
// Each page gets its own tab. The certificates in "trust" are accepted by
// their public keys (Chromium's --ignore-certificate-errors-spki-list), so
// that a page can reach an https server with a test certificate.
//
// Prints one JSON line: {"pages": [{"results": [...], "console": [{"type",
// "text"}], "errors": [...], "failed": [{"url", "error"}], "stepError"}]}.
// A step that fails ends its page's steps and is reported as "stepError";
// the exit status is non-zero only when the browser cannot be driven at all.

import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const plan = JSON.parse(process.argv[2]);
const timeout = (plan.timeoutSeconds ?? 30) * 1000;

/** The base64 SHA-256 of a certificate's public key, as Chromium's SPKI
 * list takes it. */
function spki(file) {
  const key = new X509Certificate(readFileSync(file)).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(key).digest("base64");
}

const args = [
  // What works on a machine without a GPU, a sandbox or outside network:
  // no component updates, sync or background requests that would only
  // be refused.
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
if (plan.trust?.length) {
  args.push(`--ignore-certificate-errors-spki-list=${plan.trust.map(spki).join(",")}`);
}

/** The focused element, in a line: "button#id.card[data-user=alice]: text". */
function describeFocus() {
  const element = document.activeElement;
  if (!element || element === document.body) return "body";
  let text = element.tagName.toLowerCase();
  if (element.id) text += `#${element.id}`;
  for (const name of element.classList) text += `.${name}`;
  if (element.dataset.user) text += `[data-user=${element.dataset.user}]`;
  return `${text}: ${(element.textContent ?? "").trim().slice(0, 80)}`;
}

/** axe-core (pinned in package.json) run on the page: its violations. It
 * is evaluated through the DevTools protocol, which a page's
 * Content-Security-Policy does not apply to, so the page is checked under
 * its own policy. */
async function axe(page) {
  const source = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
  await page.evaluate(source);
  const results = await page.evaluate(() =>
    window.axe.run(document, { resultTypes: ["violations"] }),
  );
  return results.violations.map((violation) => ({
    id: violation.id,
    impact: violation.impact,
    help: violation.help,
    targets: violation.nodes.map((node) => node.target.join(" ")),
  }));
}

async function runPage(context, steps) {
  const report = { results: [], console: [], errors: [], failed: [], stepError: null };
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on("console", (message) => report.console.push({ type: message.type(), text: message.text() }));
  page.on("pageerror", (error) => report.errors.push(String(error)));
  page.on("requestfailed", (request) =>
    report.failed.push({ url: request.url(), error: request.failure()?.errorText ?? "failed" }),
  );
  try {
    for (const step of steps) {
      if ("goto" in step) {
        await page.goto(step.goto);
      } else if ("waitFor" in step) {
        await page.waitForSelector(step.waitFor);
      } else if ("text" in step) {
        report.results.push(await page.textContent(step.text));
      } else if ("click" in step) {
        await page.click(step.click);
      } else if ("fill" in step) {
        await page.fill(step.fill[0], step.fill[1]);
      } else if ("press" in step) {
        await page.press(step.press[0], step.press[1]);
      } else if ("screenshot" in step) {
        await page.screenshot({ path: step.screenshot, fullPage: true });
      } else if ("waitForText" in step) {
        const [selector, text] = step.waitForText;
        await page.waitForFunction(
          ([selector, text]) => document.querySelector(selector)?.textContent.includes(text),
          [selector, text],
        );
      } else if ("waitForChange" in step) {
        const before = await page.textContent(step.waitForChange);
        await page.waitForFunction(
          ([selector, before]) => document.querySelector(selector)?.textContent !== before,
          [step.waitForChange, before],
        );
      } else if ("count" in step) {
        report.results.push(String(await page.locator(step.count).count()));
      } else if ("attribute" in step) {
        report.results.push(await page.getAttribute(step.attribute[0], step.attribute[1]));
      } else if ("key" in step) {
        await page.keyboard.press(step.key);
      } else if ("focused" in step) {
        report.results.push(await page.evaluate(describeFocus));
      } else if ("eval" in step) {
        report.results.push(JSON.stringify(await page.evaluate(step.eval)));
      } else if ("axe" in step) {
        report.results.push(JSON.stringify(await axe(page)));
      } else if ("request" in step) {
        const { method = "GET", url, headers = {}, body } = step.request;
        const response = await fetch(url, { method, headers, body });
        await response.arrayBuffer();
        report.results.push(String(response.status));
      } else if ("viewport" in step) {
        await page.setViewportSize({ width: step.viewport[0], height: step.viewport[1] });
      } else {
        throw new Error(`unknown step ${JSON.stringify(step)}`);
      }
    }
  } catch (error) {
    report.stepError = String(error);
  }
  await page.close();
  return report;
}

const userDataDir = await mkdtemp(join(tmpdir(), "presenced-chromium-"));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: plan.chromium,
    headless: true,
    args,
    timeout,
  });
} catch (error) {
  await rm(userDataDir, { recursive: true, force: true });
  console.error(`cannot start ${plan.chromium}: ${error}`);
  process.exit(2);
}
const pages = [];
for (const page of plan.pages) {
  pages.push(await runPage(context, page.steps));
}
await context.close();
await rm(userDataDir, { recursive: true, force: true });
console.log(JSON.stringify({ pages }));
