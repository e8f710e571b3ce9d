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
