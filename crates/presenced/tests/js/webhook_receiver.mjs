// A webhook receiver as Graph's documentation writes one, served over
// https: it echoes the validation token as text/plain and accepts
// notifications with 202, keeping each item.

import { readFileSync } from "node:fs";
import { createServer } from "node:https";

export async function startReceiver(certFile, keyFile) {
  const items = [];
  const validated = [];
  let waiting = [];
  const server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (request, response) => {
    const url = new URL(request.url, "https://receiver");
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      const token = url.searchParams.get("validationToken");
      if (token !== null) {
        validated.push(url.pathname);
        response.writeHead(200, { "Content-Type": "text/plain" });
        response.end(token);
        return;
      }
      for (const item of JSON.parse(Buffer.concat(chunks).toString()).value) {
        items.push({ path: url.pathname, item });
      }
      response.writeHead(202);
      response.end();
      const ready = waiting;
      waiting = [];
      ready.forEach((wake) => wake());
    });
  });
  await new Promise((ready) => server.listen(0, "127.0.0.1", ready));
  const base = `https://127.0.0.1:${server.address().port}`;
  return {
    url: (path) => `${base}${path}`,
    validated,
    items,
    /** Waits until `count` items have arrived at `path`, failing after
     * `seconds` (a guard against a hang). */
    async waitFor(path, count, seconds = 30) {
      const deadline = Date.now() + seconds * 1000;
      for (;;) {
        const arrived = items.filter((entry) => entry.path === path);
        if (arrived.length >= count) {
          return arrived.map((entry) => entry.item);
        }
        if (Date.now() > deadline) {
          throw new Error(`expected ${count} notifications at ${path} within ${seconds} s, got ${JSON.stringify(arrived)}`);
        }
        await new Promise((wake) => {
          waiting.push(wake);
          setTimeout(wake, 1000);
        });
      }
    },
    /** Stops listening and closes the connections presenced keeps alive. */
    close() {
      const closed = new Promise((done) => server.close(done));
      server.closeAllConnections();
      return closed;
    },
  };
}
