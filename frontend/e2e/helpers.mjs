// Shared helpers of the storefront's browser tests: the browser, the API, timings, screenshots.
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import path from "node:path";

import { chromium } from "playwright-core";

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set (see tests/e2e/test_storefront.py)`);
  return value.replace(/\/+$/, "");
}

export const SHOP = required("STOREFRONT_URL");
export const API = required("RECOMMNDR_API_URL");
export const REPORTS = process.env.REPORT_DIR || "reports";
export const SHOTS = path.join(REPORTS, "screenshots");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const SHOPPER_COOKIE = "recommndr_shopper";

/** Debian's Chromium, headless; Playwright gives it a fresh temporary --user-data-dir. */
export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/**
 * A fresh browser context and page that records every console error and uncaught exception.
 * `done()` asserts there were none and closes the context.
 */
export async function openPage(browser, { shopper, viewport = { width: 1280, height: 900 } } = {}) {
  const context = await browser.newContext({ viewport });
  if (shopper !== undefined) {
    await context.addCookies([{ name: SHOPPER_COOKIE, value: String(shopper), url: SHOP }]);
  }
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const errors = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console.error on ${page.url()}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => errors.push(`uncaught exception on ${page.url()}: ${err.message}`));
  const done = async () => {
    await context.close();
    assert.deepEqual(errors, [], "the pages logged JavaScript errors");
  };
  return { context, page, errors, done };
}

export async function screenshot(page, name) {
  await mkdir(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** GET from the API directly (the tests' source of the known answers). */
export async function api(pathAndQuery) {
  const res = await fetch(`${API}${pathAndQuery}`);
  assert.equal(res.status, 200, `GET ${pathAndQuery} answered ${res.status}`);
  return res.json();
}

/** `recommndr_events_total` from the API's /metrics, keyed "event_type/variant". */
export async function eventCounts() {
  const res = await fetch(`${API}/metrics`);
  assert.equal(res.status, 200);
  const counts = {};
  for (const line of (await res.text()).split("\n")) {
    const m = line.match(/^recommndr_events_total\{([^}]*)\} (\S+)$/);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    counts[`${labels.event_type}/${labels.variant}`] = Number(m[2]);
  }
  return counts;
}

/** Poll until `check()` returns a truthy value (events are counted once they are durable). */
export async function eventually(check, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/**
 * A real shopper and one of their current recommendations that has frequently-bought-together
 * items (the known answer for the product-page tests), asked of the API now: events sent by
 * earlier tests change a shopper's recommendations.
 */
export async function recommendationWithBundle({ exclude = [] } = {}) {
  const { shoppers } = await api("/shoppers?n=6");
  for (const s of shoppers.filter((x) => !exclude.includes(x.user_id))) {
    const recs = await api(`/recommendations/${s.user_id}?k=10`);
    for (const item of recs.items) {
      const fbt = await api(`/frequently_bought_together/${item.item_id}?k=5`);
      if (fbt.items.length > 0) {
        return { userId: s.user_id, itemId: item.item_id, variant: recs.variant, recs, fbt };
      }
    }
  }
  assert.fail("no shopper has a recommendation with frequently-bought-together items in this dataset");
}

/**
 * Navigation Timing and Element Timing of one page load, measured in the browser: time to first
 * byte, DOMContentLoaded, load, first contentful paint and when the page's main list was painted
 * (the element marked `elementtiming`; the moment it was seen visible when the API is missing).
 */
export async function measure(page, url, listSelector, timingId) {
  await page.goto(url, { waitUntil: "load" });
  await page.locator(listSelector).first().waitFor({ state: "visible" });
  const seenVisible = await page.evaluate(() => performance.now());
  return page.evaluate(
    async ({ timingId, seenVisible }) => {
      const [nav] = performance.getEntriesByType("navigation");
      const fcp = performance.getEntriesByName("first-contentful-paint")[0];
      const element = await new Promise((resolve) => {
        const found = (entries) => entries.find((e) => e.identifier === timingId);
        const observer = new PerformanceObserver((list) => {
          const e = found(list.getEntries());
          if (e) {
            observer.disconnect();
            resolve(e);
          }
        });
        try {
          observer.observe({ type: "element", buffered: true });
        } catch {
          resolve(null);
        }
        setTimeout(() => {
          observer.disconnect();
          resolve(null);
        }, 2000);
      });
      const round = (x) => (typeof x === "number" && x > 0 ? Math.round(x * 10) / 10 : null);
      const painted = element ? element.renderTime || element.loadTime : null;
      return {
        ttfb_ms: round(nav.responseStart),
        dom_content_loaded_ms: round(nav.domContentLoadedEventEnd),
        load_ms: round(nav.loadEventEnd),
        first_contentful_paint_ms: round(fcp?.startTime),
        list_visible_ms: round(painted ?? seenVisible),
        list_visible_source: painted ? "element-timing" : "visible-check",
        transfer_bytes: nav.transferSize,
      };
    },
    { timingId, seenVisible },
  );
}

export function median(values) {
  const v = values.filter((x) => typeof x === "number").sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : Math.round(((v[mid - 1] + v[mid]) / 2) * 10) / 10;
}
