// The board's screenshots for the docs, taken by scripts/board-screenshots.sh
// (which starts presenced, seeds the tenant, and copies this script beside
// the pinned playwright-core, where Node finds it).
//
//     node board-screenshots.mjs ORIGIN USERS DETAIL_USER OUT_DIR
//
// Writes OUT_DIR/board-desktop.png (1280×800), OUT_DIR/board-phone.png
// (390×844, a phone's viewport, touch and mobile layout) and
// OUT_DIR/board-detail.png (DETAIL_USER's detail on the desktop), each the
// viewport at one device pixel per CSS pixel.

import { join } from "node:path";

import { chromium } from "playwright-core";

const [origin, users, detailUser, out] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  // As the browser tests start it (crates/presenced/tests/js/browser_driver.mjs).
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

/** A page of the board at `viewport`, once every user is shown and the
 * clock's buttons are there (they come last). */
async function board(viewport, extra = {}) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, locale: "en-US", ...extra });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.goto(`${origin}/_presenced/board`);
  await page.waitForFunction(
    (count) => Number(document.getElementById("summary")?.textContent.replace(/\D/g, "")) === count,
    Number(users),
  );
  await page.waitForSelector("#clock:not([hidden])");
  // The cards are drawn in the frame after the last change.
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  return { context, page, errors };
}

/** Fails on any uncaught error the page had: a screenshot of a broken
 * board is worse than none. */
function check({ errors }) {
  if (errors.length > 0) throw new Error(`the board failed: ${errors.join("; ")}`);
}

try {
  const desktop = await board({ width: 1280, height: 800 });
  await desktop.page.screenshot({ path: join(out, "board-desktop.png") });
  await desktop.page.click(`button.card[data-user="${detailUser}"]`);
  await desktop.page.waitForSelector("#detail table.sessions");
  await desktop.page.screenshot({ path: join(out, "board-detail.png") });
  check(desktop);
  await desktop.context.close();

  const phone = await board({ width: 390, height: 844 }, { isMobile: true, hasTouch: true });
  await phone.page.screenshot({ path: join(out, "board-phone.png") });
  check(phone);
  await phone.context.close();
} finally {
  await browser.close();
}
