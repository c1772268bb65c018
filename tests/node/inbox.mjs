// Drive the approvals inbox page in headless Chromium (playwright-core with
// Debian's /usr/bin/chromium), for skillgate's Rust tests.
//
//   SG_INBOX_URL=http://127.0.0.1:PORT/approvals/ SG_APPROVER_TOKEN=... \
//   SG_RULE=customer-export SG_REASON="ticket 7" SG_SCREENSHOT=/tmp/inbox.png \
//   node tests/node/inbox.mjs
//
// Enters the token, waits for a pending request of SG_RULE, takes a
// screenshot, types the reason and clicks Approve, then waits until the
// request leaves the list. Prints one JSON line:
// {"ok": true, "preview", "rule", "status", "console_errors": [...]}
// or {"ok": false, "error"}.
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`inbox.mjs: ${name} is required`);
    process.exit(2);
  }
  return v;
};

const url = env("SG_INBOX_URL");
const token = env("SG_APPROVER_TOKEN");
const rule = env("SG_RULE");
const reason = process.env.SG_REASON || "approved in the inbox";
const screenshot = env("SG_SCREENSHOT");

const profile = mkdtempSync(join(tmpdir(), "sg-chromium-"));
// A fresh profile per run (playwright passes it as --user-data-dir).
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const out = { ok: false, console_errors: [] };
try {
  const page = await browser.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") out.console_errors.push(m.text());
  });
  const res = await page.goto(url);
  out.csp = res.headers()["content-security-policy"] || null;
  out.frame_options = res.headers()["x-frame-options"] || null;
  await page.fill("#token", token);
  await page.click("#save-token");
  const item = page.locator("li.request", { has: page.locator(".rule", { hasText: rule }) }).first();
  await item.waitFor({ state: "visible", timeout: 30000 });
  out.rule = await item.locator(".rule").textContent();
  out.preview = await item.locator(".preview").textContent();
  out.preview_html = await item.locator(".preview").innerHTML();
  await page.screenshot({ path: screenshot, fullPage: true });
  await item.locator(".decision-reason").fill(reason);
  await item.locator(".approve").click();
  await item.waitFor({ state: "detached", timeout: 30000 });
  out.status = await page.locator("#status").textContent();
  out.ok = true;
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
