// The storefront in a real browser (Debian's Chromium via playwright-core) against the real API.
// Run by tests/e2e/test_storefront.py, which trains a small dataset and starts both servers:
//   STOREFRONT_URL=... RECOMMNDR_API_URL=... REPORT_DIR=reports node --test e2e/storefront.test.mjs
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import {
  REPORTS,
  SHOP,
  api,
  eventCounts,
  eventually,
  launch,
  measure,
  median,
  openPage,
  recommendationWithBundle,
  screenshot,
} from "./helpers.mjs";

const RECOMMENDED = '[data-testid="list-recommended"]';
const TRENDING = '[data-testid="list-trending"]';
const cardsIn = (page, list) => page.locator(`${list} [data-testid="product-card"]`);
const homeIds = (page) => itemIds(page.locator('main [data-testid^="list-"] [data-testid="product-card"]'));
const itemIds = async (locator) =>
  (await locator.evaluateAll((els) => els.map((e) => e.getAttribute("data-item-id")))).map(Number);

/** The Trending row shows the API's `/trending` items not already recommended above, in order, each "trending". */
async function checkTrending(page) {
  const above = new Set(await itemIds(cardsIn(page, RECOMMENDED)));
  const trending = await api("/trending?k=20");
  const expected = trending.items.filter((i) => !above.has(i.item_id)).slice(0, 10);
  assert.ok(expected.length > 0, "the tiny shop has trending products beyond the recommendations");
  assert.equal(await page.locator(TRENDING).getAttribute("data-source"), "trending");
  const cards = cardsIn(page, TRENDING);
  assert.deepEqual(await itemIds(cards), expected.map((i) => i.item_id));
  const reasons = await cards.getByTestId("reason").allTextContents();
  assert.deepEqual(reasons, expected.map((i) => i.reason));
  assert.ok(reasons.every((r) => r === "trending"), reasons.join("; "));
  return trending;
}

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

describe("storefront", () => {
  test("home page: a known shopper gets personal recommendations with reasons", async () => {
    const { shoppers } = await api("/shoppers?n=6");
    assert.ok(shoppers.length >= 2, "the dataset must give at least two real shoppers");
    const target = shoppers[1];
    const { page, done } = await openPage(browser);
    await page.goto(SHOP);
    // no cookie yet: the first real shopper
    await page.locator(`${RECOMMENDED}[data-user-id="${shoppers[0].user_id}"]`).waitFor();

    // switch shoppers with the demo switcher
    await page.getByLabel("Shopping as").selectOption(String(target.user_id));
    await page.getByRole("button", { name: "Switch" }).click();
    const list = page.locator(`${RECOMMENDED}[data-user-id="${target.user_id}"]`);
    await list.waitFor();
    assert.equal(await list.getAttribute("data-cold-start"), "false");

    const expected = await api(`/recommendations/${target.user_id}?k=10`);
    assert.equal(expected.cold_start, false);
    const cards = cardsIn(page, RECOMMENDED);
    assert.deepEqual(await itemIds(cards), expected.items.map((i) => i.item_id));
    assert.deepEqual(
      await cards.getByTestId("reason").allTextContents(),
      expected.items.map((i) => i.reason),
    );
    for (const field of ["brand", "category", "price"]) {
      assert.ok((await cards.first().getByTestId(field).textContent()).trim(), `a card shows its ${field}`);
    }

    await page.getByRole("heading", { name: "Trending" }).waitFor();
    const trending = await checkTrending(page);
    const category = target.favourite_category;
    await page.getByRole("heading", { name: `Popular in ${category}` }).waitFor();
    const popularCats = await cardsIn(page, '[data-testid="list-popular-in-category"]')
      .getByTestId("category")
      .allTextContents();
    assert.ok(popularCats.length > 0);
    assert.ok(popularCats.every((c) => c === category), `all popular items are in ${category}`);
    const ids = await homeIds(page);
    assert.equal(new Set(ids).size, ids.length, "no product is shown twice on the home page");

    // the model panel names the version and variant that served the list
    await page.getByText("Model info").click();
    const row = page.getByTestId("served-list").filter({ hasText: "Recommended for you" });
    await row.waitFor();
    assert.match(await row.textContent(), new RegExp(expected.model_version));
    assert.match(await row.getByTestId("variant").textContent(), new RegExp(`^${expected.variant}`));
    const trendingRow = page.getByTestId("served-list").filter({ hasText: "Trending" });
    assert.match(await trendingRow.textContent(), new RegExp(trending.model_version));
    assert.equal(await trendingRow.getByTestId("variant").textContent(), "— (trending)");
    await screenshot(page, "home-known-shopper");
    await done();
  });

  test("home page: a brand-new shopper gets popular items (cold start)", async () => {
    const { page, done } = await openPage(browser);
    await page.goto(SHOP);
    await page.getByLabel("Shopping as").selectOption("new");
    await page.getByRole("button", { name: "Switch" }).click();
    const list = page.locator(`${RECOMMENDED}[data-cold-start="true"]`);
    await list.waitFor();
    const userId = Number(await list.getAttribute("data-user-id"));
    assert.ok(userId >= 1_000_000_000, `a new shopper id (${userId})`);
    await page.getByText("You are new here").waitFor();

    const popular = (await api("/popular?k=20")).items.map((i) => i.item_id);
    assert.deepEqual(await itemIds(cardsIn(page, RECOMMENDED)), popular.slice(0, 10));
    // "Trending" is the API's rising products, less those the (popular) recommendations already show
    await checkTrending(page);
    const ids = await homeIds(page);
    assert.equal(new Set(ids).size, ids.length, "no product is shown twice on the home page");
    const reasons = await cardsIn(page, RECOMMENDED).getByTestId("reason").allTextContents();
    assert.ok(reasons.every((r) => r.startsWith("popular in ")), reasons.join("; "));
    await screenshot(page, "home-new-shopper");
    await done();
  });

  test("catalogue: filters, search and pagination narrow the grid", async () => {
    const { page, done } = await openPage(browser);
    await page.goto(`${SHOP}/products`);
    const count = page.getByTestId("result-count");
    const total = async () => Number(await count.getAttribute("data-total"));
    const grid = page.locator('[data-testid="catalogue-grid"] [data-testid="product-card"]');
    const all = await total();
    assert.ok(all > 24, `the catalogue has more than one page (${all})`);
    assert.equal(await grid.count(), 24);

    // pagination
    const firstPage = await itemIds(grid);
    await page.getByRole("link", { name: "Next →" }).click();
    await page.waitForURL(/page=2/);
    await page.getByTestId("page-indicator").filter({ hasText: "Page 2 of" }).waitFor();
    const secondPage = await itemIds(grid);
    assert.equal(secondPage.filter((id) => firstPage.includes(id)).length, 0, "page 2 shows other products");

    // a category
    const { categories } = await api("/categories");
    const category = categories[0];
    await page.getByLabel("Category").selectOption(category.name);
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL(/category=/);
    await count.filter({ hasText: `${category.count} products` }).waitFor();
    assert.ok((await total()) < all);
    assert.ok((await grid.getByTestId("category").allTextContents()).every((c) => c === category.name));

    // a price range within the category
    const prices = async () =>
      (await grid.getByTestId("price").allTextContents()).map((p) => Number(p.replace(/[^0-9.]/g, "")));
    const sorted = (await prices()).sort((a, b) => a - b);
    const [low, high] = [sorted[Math.floor(sorted.length / 4)], sorted[Math.floor((3 * sorted.length) / 4)]];
    await page.getByLabel("Min price").fill(String(low));
    await page.getByLabel("Max price").fill(String(high));
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL(/max_price=/);
    await page.waitForFunction(
      (n) => Number(document.querySelector('[data-testid="result-count"]')?.getAttribute("data-total")) < n,
      category.count,
    );
    const inRange = await prices();
    assert.ok(inRange.length > 0 && inRange.every((p) => p >= low && p <= high), `prices within ${low}-${high}`);
    const expected = await api(
      `/products?category=${encodeURIComponent(category.name)}&min_price=${low}&max_price=${high}&page_size=1`,
    );
    assert.equal(await total(), expected.total);

    // a search
    const brand = (await grid.first().getByTestId("brand").textContent()).trim();
    await page.getByLabel("Search").fill(brand);
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL(/q=/);
    const brands = await grid.getByTestId("brand").allTextContents();
    assert.ok(brands.length > 0 && brands.every((b) => b === brand), `search for ${brand}`);
    await screenshot(page, "catalogue-filtered");
    await done();
  });

  test("a recommendation opens its product page with similar products and frequently bought together", async () => {
    const pick = await recommendationWithBundle();
    const { page, done } = await openPage(browser, { shopper: pick.userId });
    await page.goto(SHOP);
    await page.locator(`${RECOMMENDED} [data-item-id="${pick.itemId}"] h3 a`).click();
    await page.waitForURL(new RegExp(`/products/${pick.itemId}\\?`));

    const product = await api(`/products/${pick.itemId}`);
    await page.getByRole("heading", { level: 1, name: product.title }).waitFor();
    const similar = await api(`/similar_items/${pick.itemId}?k=10`);
    assert.ok(similar.items.length > 0);
    assert.deepEqual(
      await itemIds(cardsIn(page, '[data-testid="list-similar"]')),
      similar.items.map((i) => i.item_id),
    );
    assert.deepEqual(
      await itemIds(cardsIn(page, '[data-testid="list-fbt"]')),
      pick.fbt.items.map((i) => i.item_id),
    );
    await page.getByTestId("add-all").waitFor();
    assert.match(await page.getByTestId("add-all").textContent(), new RegExp(`Add all ${pick.fbt.items.length + 1}`));
    await screenshot(page, "product");
    await done();
  });

  test("view, add to cart and checkout send events that the API counts", async () => {
    const pick = await recommendationWithBundle();
    const variant = pick.variant;
    const before = await eventCounts();
    const increase = async (type) => ((await eventCounts())[`${type}/${variant}`] ?? 0) - (before[`${type}/${variant}`] ?? 0);

    const { page, done } = await openPage(browser, { shopper: pick.userId });
    await page.goto(SHOP);
    await page.locator(`${RECOMMENDED} [data-item-id="${pick.itemId}"] h3 a`).click();
    await page.waitForURL(new RegExp(`/products/${pick.itemId}\\?.*variant=${variant}`));
    await eventually(async () => (await increase("view")) === 1, "the view event");

    await page.getByTestId("add-to-cart").click();
    await page.getByRole("status").filter({ hasText: "Added to your cart" }).waitFor();
    await page.getByTestId("add-all").click();
    const bundle = pick.fbt.items.length + 1;
    await page.getByRole("status").filter({ hasText: `Added ${bundle} items to your cart` }).waitFor();
    await eventually(async () => (await increase("add_to_cart")) === 1 + bundle, "the add_to_cart events");

    await page.getByTestId("cart-link").click();
    await page.waitForURL(/\/cart$/);
    const lines = page.getByTestId("cart-line");
    await lines.first().waitFor();
    assert.equal(await lines.count(), bundle, "the product once (quantity 2) and each bundled item");
    await screenshot(page, "cart");
    await page.getByTestId("checkout").click();
    await page.getByTestId("order-confirmation").waitFor();
    await eventually(async () => (await increase("purchase")) === bundle, `${bundle} purchase events`);
    assert.equal(await page.getByTestId("cart-link").locator(".badge").textContent(), "0");
    await screenshot(page, "checkout-confirmation");
    await done();
  });

  test("the /api proxy forwards status and JSON, and only the storefront's endpoints", async () => {
    const direct = await api("/products?page=3&page_size=2");
    const proxied = await fetch(`${SHOP}/api/products?page=3&page_size=2`);
    assert.equal(proxied.status, 200);
    assert.deepEqual(await proxied.json(), direct);

    const invalid = await fetch(`${SHOP}/api/events`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: SHOP }, // as the shop's pages send it
      body: JSON.stringify({ user_id: 1, item_id: 1, event_type: "wishlist" }),
    });
    assert.equal(invalid.status, 422);
    const { error } = await invalid.json();
    assert.equal(error.code, "invalid_event");
    assert.match(error.message, /event_type/);

    const unknown = await fetch(`${SHOP}/api/products/999999999`);
    assert.equal(unknown.status, 404);
    assert.equal((await unknown.json()).error.code, "not_found");

    for (const [method, endpoint] of [
      ["GET", "metrics"],
      ["GET", "trending"], // the pages' server fetches it; the browser has no need of it
      ["POST", "models/traffic"],
      ["POST", "models/rollback"],
      ["GET", "openapi.json"],
    ]) {
      const res = await fetch(`${SHOP}/api/${endpoint}`, { method });
      assert.equal(res.status, 404, `${method} /api/${endpoint} must not pass the proxy`);
    }
  });

  test("keyboard navigation and alt text", async () => {
    const { page, done } = await openPage(browser);
    await page.goto(SHOP);
    await page.locator(RECOMMENDED).waitFor();
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
    await page.keyboard.press("Enter");
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => ({
      href: document.activeElement?.getAttribute("href"),
      inList: Boolean(document.activeElement?.closest('[data-testid="list-recommended"]')),
    }));
    assert.ok(focused.inList && focused.href?.startsWith("/products/"), JSON.stringify(focused));
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/products\/\d+/);
    await page.getByTestId("product-detail").waitFor();

    for (const url of [SHOP, `${SHOP}/products`, page.url()]) {
      await page.goto(url);
      const problems = await page.evaluate(() => {
        const found = [];
        document.querySelectorAll("img").forEach((img) => {
          if (!img.getAttribute("alt")?.trim()) found.push(`img without alt: ${img.outerHTML.slice(0, 80)}`);
        });
        document.querySelectorAll("input, select, textarea").forEach((el) => {
          if (!el.labels?.length && !el.getAttribute("aria-label")) found.push(`unlabelled ${el.outerHTML.slice(0, 80)}`);
        });
        document.querySelectorAll("button, a[href]").forEach((el) => {
          if (!(el.textContent?.trim() || el.getAttribute("aria-label"))) found.push(`nameless ${el.outerHTML.slice(0, 80)}`);
        });
        return found;
      });
      assert.deepEqual(problems, [], url);
    }
    await done();
  });

  test("responsive down to phone width", async () => {
    const pick = await recommendationWithBundle().catch(() => null);
    const { shoppers } = await api("/shoppers?n=1");
    const { page, done } = await openPage(browser, {
      shopper: shoppers[0].user_id,
      viewport: { width: 360, height: 740 },
    });
    const itemId = pick?.itemId ?? (await api("/popular?k=1")).items[0].item_id;
    for (const [name, url] of [
      ["phone-home", SHOP],
      ["phone-catalogue", `${SHOP}/products`],
      ["phone-product", `${SHOP}/products/${itemId}`],
      ["phone-cart", `${SHOP}/cart`],
    ]) {
      await page.goto(url);
      await page.locator("main h1, main h2").first().waitFor();
      const width = await page.evaluate(() => ({
        scroll: document.documentElement.scrollWidth,
        viewport: window.innerWidth,
      }));
      assert.ok(width.scroll <= width.viewport, `${name}: no sideways scrolling (${JSON.stringify(width)})`);
      await screenshot(page, name);
    }
    await done();
  });

  test("page timings (Navigation Timing, Element Timing)", async () => {
    const { shoppers } = await api("/shoppers?n=1");
    const [top] = (await api("/popular?k=1")).items; // a product with similar items
    const { page, done } = await openPage(browser, { shopper: shoppers[0].user_id });
    const pages = {
      home: [SHOP, RECOMMENDED, "recommendations"],
      catalogue: [`${SHOP}/products`, '[data-testid="catalogue-grid"]', "catalogue"],
      product: [`${SHOP}/products/${top.item_id}`, '[data-testid="list-similar"] ul', "similar"],
    };
    const RUNS = 3;
    const report = {
      measured_at: new Date().toISOString(),
      storefront: SHOP,
      browser: `Chromium ${browser.version()} (headless)`,
      runs: RUNS,
      note: "milliseconds from navigation start, medians of the runs; list_visible: the first card of the page's main list painted (Element Timing)",
      pages: {},
    };
    await page.goto(SHOP); // warm the server's first render
    for (const [name, [url, selector, id]] of Object.entries(pages)) {
      const runs = [];
      for (let i = 0; i < RUNS; i++) runs.push(await measure(page, url, selector, id));
      const keys = Object.keys(runs[0]).filter((k) => typeof runs[0][k] === "number");
      report.pages[name] = {
        url: url.slice(SHOP.length) || "/",
        ...Object.fromEntries(keys.map((k) => [k, median(runs.map((r) => r[k]))])),
        list_visible_source: runs[0].list_visible_source,
        runs,
      };
      assert.ok(report.pages[name].list_visible_ms > 0, `${name}: the list was seen`);
    }
    await mkdir(REPORTS, { recursive: true });
    const file = path.join(REPORTS, "storefront-timings.json");
    await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`page timings (ms, median of ${RUNS}) -> ${file}`);
    console.table(
      Object.fromEntries(
        Object.entries(report.pages).map(([name, t]) => [
          name,
          {
            ttfb: t.ttfb_ms,
            domContentLoaded: t.dom_content_loaded_ms,
            load: t.load_ms,
            fcp: t.first_contentful_paint_ms,
            listVisible: t.list_visible_ms,
          },
        ]),
      ),
    );
    await done();
  });
});
