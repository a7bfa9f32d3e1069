// The ops page (/ops) in Chromium, against an API with admin access and a challenger (see
// tests/e2e/test_ops_page.py, which starts both servers and passes the tokens).
import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, test } from "node:test";

import { API, SHOP, eventually, launch, openPage, screenshot } from "./helpers.mjs";

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set (see tests/e2e/test_ops_page.py)`);
  return value;
}

const TOKEN = required("ADMIN_TOKEN");
const WRONG_TOKEN = required("WRONG_ADMIN_TOKEN"); // a well-formed JWT signed with another key
const TOKEN_KEY = "recommndr-admin-token";
const OPERATOR = JSON.parse(Buffer.from(TOKEN.split(".")[1], "base64url").toString()).sub;

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** A call to the API directly, as an admin from 127.0.0.1 (inside its allow-list). */
async function admin(method, path, body) {
  const res = await fetch(`${API}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await res.json();
  assert.ok(res.ok, `${method} ${path} answered ${res.status}: ${JSON.stringify(answer)}`);
  return answer;
}

async function models() {
  const res = await fetch(`${API}/models`);
  assert.equal(res.status, 200);
  return res.json();
}

/** Every request the page makes to the admin route. */
function adminRequests(page) {
  const seen = [];
  page.on("request", (r) => {
    if (new URL(r.url()).pathname.startsWith("/api/admin/")) seen.push(r);
  });
  return seen;
}

async function useToken(page, token) {
  await page.getByTestId("ops-token").fill(token);
  await page.getByRole("button", { name: "Use token" }).click();
}

test("without a token the page asks for one and shows no data", async () => {
  const { page, done } = await openPage(browser);
  const calls = adminRequests(page);
  await page.goto(`${SHOP}/ops`);
  await page.getByTestId("ops-refusal").getByText("Admin token required").waitFor();
  await page.waitForTimeout(500);
  assert.equal(await page.getByTestId("ops-data").count(), 0);
  assert.equal(await page.getByTestId("ops-audit").count(), 0);
  assert.deepEqual(calls.map((r) => r.url()), [], "the page called the admin route without a token");
  await done();
});

test("a wrong token is refused with the API's message and shows no data", async () => {
  const { page, context, errors, done } = await openPage(browser);
  const calls = adminRequests(page);
  await page.goto(`${SHOP}/ops`);
  await useToken(page, WRONG_TOKEN);
  const refusal = page.getByTestId("ops-refusal");
  await refusal.getByText("Admin token required").waitFor();
  assert.match(await page.getByTestId("ops-refusal-message").innerText(), /invalid token: Signature verification failed/);
  assert.equal(await page.getByTestId("ops-data").count(), 0);
  // the token went as a bearer header, and is in this tab's sessionStorage only
  assert.ok(calls.length > 0);
  assert.equal(calls[0].headers().authorization, `Bearer ${WRONG_TOKEN}`);
  assert.ok(!page.url().includes(WRONG_TOKEN.slice(0, 20)), "the token is in the URL");
  assert.deepEqual((await context.cookies()).filter((c) => c.value.includes(WRONG_TOKEN.slice(0, 20))), []);
  assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY), WRONG_TOKEN);
  assert.equal(await page.evaluate((k) => localStorage.getItem(k), TOKEN_KEY), null);
  // refused: polling stops (no call every few seconds with a token the API refuses)
  const made = calls.length;
  await page.waitForTimeout(4000);
  assert.equal(calls.length, made, "the page kept polling with a refused token");
  // a string that is not a JWT is refused by the storefront's admin route itself
  await useToken(page, "not-a-token");
  await page.getByTestId("ops-refusal-message").getByText("an admin token is required").waitFor();
  assert.equal(await page.getByTestId("ops-data").count(), 0);
  // Chromium logs each refused request ("Failed to load resource: ... 401"): those are expected here
  const refused = /^console\.error on \S+: Failed to load resource: the server responded with a status of 401 /;
  assert.ok(errors.some((e) => refused.test(e)));
  errors.splice(0, errors.length, ...errors.filter((e) => !refused.test(e)));
  await done();
});

test("a manual rollback from the page sends every user to the champion and lands in the trail", async () => {
  await admin("POST", "/models/traffic", { challenger: 0.4 });
  // the API's other worker processes take the shared split up within a moment
  await eventually(async () => (await models()).traffic.challenger === 0.4, "challenger traffic 0.4 on every worker");

  const { page, done } = await openPage(browser);
  await page.goto(`${SHOP}/ops`);
  await useToken(page, TOKEN);
  await page.getByTestId("ops-data").waitFor();
  assert.equal(await page.getByTestId("ops-model").count(), 2);
  await page.getByTestId("ops-share-challenger").getByText("40 %").waitFor();
  assert.equal(await page.getByTestId("ops-audit-verified").innerText(), "Hash chain verified.");

  const reason = `e2e: rollback from the ops page ${Date.now()}`;
  await page.getByTestId("ops-rollback").click();
  // nothing is sent before a reason is given
  assert.equal(await page.getByTestId("ops-confirm").isDisabled(), true);
  await page.getByTestId("ops-reason").fill(reason);
  await page.getByTestId("ops-confirm").click();
  await page.getByTestId("ops-action-status").getByText(`Rolled back: ${reason}`).waitFor();

  const after = await eventually(async () => {
    const m = await models();
    return m.traffic.challenger === 0 ? m : null;
  }, "GET /models to show challenger traffic 0");
  assert.equal(after.traffic.champion, 1);
  // the page refreshed after the action: the split and the trail show it
  await page.getByTestId("ops-share-challenger").getByText("0 %").waitFor();
  const entry = page.getByTestId("ops-audit-entry").filter({ hasText: reason });
  await entry.waitFor();
  assert.equal(await entry.getByTestId("ops-audit-action").innerText(), "rollback");
  // and the API's trail has it too, by the token's subject
  const { entries, verified } = await admin("GET", "/models/audit?after=0&limit=500");
  assert.equal(verified, true);
  const mine = entries.filter((e) => e.reason === reason);
  assert.equal(mine.length >= 1, true, JSON.stringify(entries.slice(-3)));
  assert.equal(mine[0].action, "rollback");
  assert.equal(mine[0].by, OPERATOR);
  await screenshot(page, "ops-after-rollback");
  await done();
});

test("pause, resume and promote from the page change the control state and are audited", async () => {
  const { page, done } = await openPage(browser);
  await page.goto(`${SHOP}/ops`);
  await useToken(page, TOKEN);
  await page.getByTestId("ops-data").waitFor();
  const act = async (button, reason) => {
    await page.getByTestId(button).click();
    await page.getByTestId("ops-reason").fill(reason);
    await page.getByTestId("ops-confirm").click();
    await page.getByTestId("ops-audit-entry").filter({ hasText: reason }).waitFor();
  };
  const stamp = Date.now();
  await act("ops-pause", `e2e: hold ${stamp}`);
  await page.getByTestId("ops-paused").getByText("paused (held at its step)").waitFor();
  assert.equal((await admin("GET", "/models/control")).paused, true);
  await act("ops-resume", `e2e: go on ${stamp}`);
  await page.getByTestId("ops-paused").getByText("not paused").waitFor();
  await act("ops-promote", `e2e: promote ${stamp}`);
  await page.getByTestId("ops-request").getByText(`promote by ${OPERATOR}`).waitFor();
  const control = await admin("GET", "/models/control");
  assert.equal(control.paused, false);
  assert.equal(control.request.action, "promote");
  assert.equal(control.request.reason, `e2e: promote ${stamp}`);
  const actions = (await admin("GET", "/models/audit?after=0&limit=500")).entries
    .filter((e) => e.reason.endsWith(String(stamp)))
    .map((e) => e.action);
  assert.deepEqual(actions, ["pause", "resume", "promote"]);
  await done();
});

test("the canary's progress, looks, decision and drift are drawn; the token survives a reload", async () => {
  const look = (i, diff, half, decision) => ({
    at: new Date(Date.UTC(2026, 11, 2, 10, i)).toISOString(),
    share: [0.05, 0.25, 0.5, 1.0][Math.min(i, 3)],
    ctr: { champion: 0.05, challenger: 0.05 + diff, diff, ci_low: diff - half, ci_high: diff + half },
    cvr: { champion: 0.01, challenger: 0.01, diff: 0, ci_low: -half / 2, ci_high: half / 2 },
    guards: { errors: { value: i === 3 ? 0.09 : 0.0, limit: 0.05, breached: i === 3 } },
    decision,
  });
  await admin("PUT", "/models/canary", {
    instance_id: "e2e-canary-1",
    status: "rolling_back",
    started_at: "2026-12-02T10:00:00Z",
    updated_at: "2026-12-02T10:04:00Z",
    champion_version: "champ-v1",
    challenger_version: "chal-v2",
    step: 1,
    steps: [0.05, 0.25, 0.5, 1.0],
    share: 0.25,
    looks: [look(0, -0.004, 0.03, "continue"), look(1, -0.008, 0.02, "continue"), look(2, -0.012, 0.01, "continue"),
            look(3, -0.015, 0.006, "rollback")],
    decision: { action: "rollback", rule: "guard:errors", reason: "error rate 9.0 % > 5.0 %" },
    drift: { drift: true, kinds: { feature: true }, features: {
      price: { psi: 0.41, threshold: 0.1, p_adjusted: 0.0001, n: 900, drift: true },
      popularity: { psi: 0.02, threshold: 0.1, p_adjusted: 0.6, n: 900, drift: false } } },
  });

  const { page, done } = await openPage(browser);
  await page.goto(`${SHOP}/ops`);
  await useToken(page, TOKEN);
  await page.getByTestId("ops-canary-status").getByText("rolling_back").waitFor();
  assert.match(await page.getByTestId("ops-canary-step").innerText(), /^2 of 4, challenger share 25 %/);
  assert.equal(await page.getByTestId("ops-look").count(), 4);
  // the newest look first, with its interval and the breached guard
  const newest = await page.getByTestId("ops-look").first().innerText();
  assert.match(newest, /−1\.50 pp \[−2\.10 pp, −0\.90 pp\]/);
  assert.match(newest, /errors 0\.09.* > 0\.05/);
  assert.match(await page.getByTestId("ops-decision").innerText(), /rollback by guard:errors: error rate 9\.0 % > 5\.0 %/);
  for (const metric of ["ctr", "cvr"]) {
    const chart = page.getByTestId(`ops-chart-${metric}`);
    assert.equal(await chart.locator("polygon.band").count(), 1);
    assert.equal(await chart.locator("circle.estimate").count(), 4);
  }
  const drift = page.getByTestId("ops-drift-feature");
  assert.equal(await drift.count(), 2);
  assert.match(await drift.first().innerText(), /price\s+0\.410\s+0\.100/);
  await screenshot(page, "ops-canary");

  // the token is kept for this tab: a reload shows the data again without asking
  await page.reload();
  await page.getByTestId("ops-data").waitFor();
  await page.getByTestId("ops-forget").click();
  await page.getByTestId("ops-refusal").getByText("Admin token required").waitFor();
  assert.equal(await page.getByTestId("ops-data").count(), 0);
  await done();
});

test("the Retrain panel starts the API's retrain and shows it running, then finished with its outcome", async () => {
  const gate = required("RETRAIN_GATE"); // the stand-in retrain ends once this file exists
  const { page, errors, done } = await openPage(browser);
  await page.goto(`${SHOP}/ops`);
  await useToken(page, TOKEN);
  await page.getByTestId("ops-retrain-state").getByText("none started").waitFor();
  // a fault for the challenger needs fault injection on the API, which this one has off: said
  await page.getByTestId("ops-retrain-fault").selectOption("errors");
  await page.getByTestId("ops-retrain-start").click();
  await page.getByTestId("ops-retrain-status").getByText("fault injection is disabled").waitFor();
  assert.equal((await admin("GET", "/models/retrain")).state, "idle");
  const refused = /^console\.error on \S+: Failed to load resource: the server responded with a status of 403 /;
  errors.splice(0, errors.length, ...errors.filter((e) => !refused.test(e)));

  await page.getByTestId("ops-retrain-fault").selectOption("none");
  await page.getByTestId("ops-retrain-start").click();
  await page.getByTestId("ops-retrain-status").getByText("Retrain started").waitFor();
  await page.getByTestId("ops-retrain-state").getByText("running").waitFor();
  assert.equal(await page.getByTestId("ops-retrain-start").isDisabled(), true, "a second start is offered while one runs");
  const running = await admin("GET", "/models/retrain");
  assert.equal(running.state, "running");
  // a second start, straight to the API, is refused while it runs
  const second = await fetch(`${API}/models/retrain`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(second.status, 409);
  await eventually(async () => (await admin("GET", "/models/retrain")).log_tail.includes("training ..."), "its log");
  await screenshot(page, "ops-retrain-running");

  fs.writeFileSync(gate, "");
  await page.getByTestId("ops-retrain-state").getByText("finished").waitFor({ timeout: 30_000 });
  const outcome = await page.getByTestId("ops-retrain-outcome").innerText();
  assert.match(outcome, /^promoted: e2e: retrain --local --api \S+ --data \S+ --json --canary-fault none \(2 s\)$/);
  assert.equal(await page.getByTestId("ops-retrain-start").isDisabled(), false);
  const trail = (await admin("GET", "/models/audit?after=0&limit=500")).entries.filter((e) => e.action === "retrain");
  assert.deepEqual(trail.map((e) => [e.by, e.details.fault]), [[OPERATOR, "none"]]);
  await screenshot(page, "ops-retrain-finished");
  await done();
});
