// Drives the NetOps dashboard in headless Debian Chromium through playwright-core, for the Rust
// browser test (tests/netops_dashboard/browser.rs). One process per test run:
//
//   env PLAYWRIGHT_CORE  the playwright-core package directory (never `npx playwright install`)
//       DASHBOARD_URL    the page to open
//       ARTIFACT_DIR     where screenshots go
//   stdin   one JSON command per line: {"step": "01-default", "timeout_ms": 30000,
//           "links": {"<from>-><to>": {"state": "up"} | {"not_state": "up"}},
//           "nodes": {"<name>": {"up": true} | {"present": false}}}
//   stdout  one JSON answer per line: {"ok": true, "step", "screenshot", "links": {key:
//           {"state", "stroke"}}, "nodes": {name: {"up", "kind"}}, "badge", "delivery",
//           "foreign_requests"} or {"ok": false, "error", "seen", "screenshot"}.
//
// The wait is the browser's own polling of the DOM with a deadline (no sleeps); the answer carries
// the computed stroke colour of each link line so the test checks what a person sees.
"use strict";

const path = require("path");
const readline = require("readline");
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const url = process.env.DASHBOARD_URL;
const artifacts = process.env.ARTIFACT_DIR;

function answer(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// Runs in the page: does the DOM meet the expectation?
function meets(expect) {
  const linkEl = (key) => document.querySelector('[data-link="' + CSS.escape(key) + '"]');
  const nodeEl = (name) => document.querySelector('[data-router="' + CSS.escape(name) + '"]');
  for (const [key, want] of Object.entries(expect.links || {})) {
    const el = linkEl(key);
    const state = el ? el.getAttribute("data-state") : null;
    if (want.state !== undefined && state !== want.state) return false;
    if (want.not_state !== undefined && state === want.not_state) return false;
  }
  for (const [name, want] of Object.entries(expect.nodes || {})) {
    const el = nodeEl(name);
    if (want.present === false) { if (el) return false; continue; }
    if (!el) return false;
    if (want.up !== undefined && el.getAttribute("data-up") !== String(want.up)) return false;
  }
  return true;
}

// Runs in the page: what is drawn now (states, computed colours).
function observe() {
  const links = {};
  document.querySelectorAll("[data-link]").forEach((g) => {
    const line = g.querySelector(".link-line");
    links[g.getAttribute("data-link")] = {
      state: g.getAttribute("data-state"),
      stroke: line ? getComputedStyle(line).stroke : null,
      text: g.textContent.trim(),
    };
  });
  const nodes = {};
  document.querySelectorAll("[data-router]").forEach((g) => {
    nodes[g.getAttribute("data-router")] = {
      up: g.getAttribute("data-up") === "true",
      kind: g.getAttribute("data-kind"),
      stroke: getComputedStyle(g.querySelector("rect")).stroke,
    };
  });
  const badge = document.getElementById("version-badge");
  return {
    links,
    nodes,
    badge: {
      text: badge.textContent.replace(/\s+/g, " ").trim(),
      color: badge.getAttribute("data-color"),
      background: getComputedStyle(badge).backgroundColor,
    },
    delivery: document.getElementById("delivery").textContent,
    banner: document.getElementById("banner").hidden ? "" : document.getElementById("banner").textContent,
  };
}

async function main() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  const origin = new URL(url).origin;
  const foreign = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) foreign.push(r.url());
  });
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(url, { waitUntil: "load" });
  answer({ ok: true, step: "opened" });

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    const shot = path.join(artifacts, cmd.step + ".png");
    try {
      await page.waitForFunction(meets, cmd, { timeout: cmd.timeout_ms || 30000, polling: 100 });
      // Let the stroke transition (0.4 s CSS) finish before reading colours and shooting.
      await page.waitForFunction(() => document.getAnimations().every((a) =>
        !(a instanceof CSSTransition) || a.playState !== "running"), null, { timeout: 5000, polling: 50 });
      const seen = await page.evaluate(observe);
      await page.screenshot({ path: shot });
      answer({ ok: true, step: cmd.step, screenshot: shot, ...seen,
        foreign_requests: foreign, console_errors: consoleErrors });
    } catch (e) {
      let seen = null;
      try { seen = await page.evaluate(observe); await page.screenshot({ path: shot }); } catch (_) { /* page gone */ }
      answer({ ok: false, step: cmd.step, error: String(e.message || e).split("\n")[0], seen,
        screenshot: shot, console_errors: consoleErrors });
    }
  }
  await browser.close();
}

main().catch((e) => {
  answer({ ok: false, step: "start", error: String(e && e.message || e).split("\n")[0] });
  process.exit(1);
});
