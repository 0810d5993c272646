// The web console in Debian's chromium, driven by playwright-core; axe-core on
// every page. Run by e2e/tests/e2e/console.rs, which starts the gateway, the mock
// identity provider and the upstreams, and passes:
//   HAWSER_CONSOLE_URL          the gateway's public URL (nginx in front of replicas)
//   HAWSER_CHROMIUM             the browser (default /usr/bin/chromium)
//   HAWSER_CONSOLE_SCREENSHOTS  a directory for one PNG per page (optional)
//   HAWSER_ALICE_KEY            an API key of alice, to call tools as her
// Exits non-zero with the reason on the first failed check.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = process.env.HAWSER_CONSOLE_URL;
assert.ok(base, "HAWSER_CONSOLE_URL is required");
const aliceKey = process.env.HAWSER_ALICE_KEY;
assert.ok(aliceKey, "HAWSER_ALICE_KEY is required");
const shots = process.env.HAWSER_CONSOLE_SCREENSHOTS;
if (shots) mkdirSync(shots, { recursive: true });
const axeSource = readFileSync(
  new URL("./node_modules/axe-core/axe.min.js", import.meta.url),
  "utf8",
);

const checks = [];
function check(name) {
  checks.push(name);
  console.log(`ok ${checks.length} - ${name}`);
}

/** axe-core on the current page: no serious or critical violation. */
async function accessible(page, name) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { resultTypes: ["violations"] }),
  );
  const bad = result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  assert.deepEqual(bad, [], `${name}: accessibility violations`);
  check(`${name}: no serious or critical axe violation`);
}

async function shot(page, name) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** An MCP initialize with `key`: the HTTP status. */
async function initializeWith(key) {
  const r = await fetch(`${base}/mcp`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${key}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-11-25",
        capabilities: {},
        clientInfo: { name: "console-test", version: "1" },
      },
    }),
  });
  await r.body?.cancel();
  return r.status;
}

/** One JSON-RPC POST to /mcp with `key`: status, session id, the answer to `body`. */
async function mcpPost(key, session, body) {
  const headers = {
    authorization: `Bearer ${key}`,
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
  };
  if (session) {
    headers["mcp-session-id"] = session;
    headers["mcp-protocol-version"] = "2025-11-25";
  }
  const r = await fetch(`${base}/mcp`, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await r.text();
  let answer = null;
  if ((r.headers.get("content-type") ?? "").includes("text/event-stream")) {
    for (const line of text.split("\n")) {
      if (!line.startsWith("data:")) continue;
      const m = JSON.parse(line.slice(5));
      if (m.id === body.id) answer = m;
    }
  } else if (text) {
    answer = JSON.parse(text);
  }
  return { status: r.status, session: r.headers.get("mcp-session-id"), answer };
}

/** Calls tool `name` as the holder of `key`: the tools/call result. */
async function callTool(key, name, args = {}) {
  const init = await mcpPost(key, null, {
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: {
      protocolVersion: "2025-11-25",
      capabilities: {},
      clientInfo: { name: "console-test", version: "1" },
    },
  });
  assert.equal(init.status, 200, "initialize");
  await mcpPost(key, init.session, { jsonrpc: "2.0", method: "notifications/initialized" });
  const r = await mcpPost(key, init.session, {
    jsonrpc: "2.0",
    id: 2,
    method: "tools/call",
    params: { name, arguments: args },
  });
  assert.ok(r.answer?.result, `tools/call ${name}: ${JSON.stringify(r.answer)}`);
  return r.answer.result;
}

/** The text of a tool result. */
function textOf(result) {
  return (result.content ?? []).map((c) => c.text ?? "").join("");
}

async function eventually(what, fn, ms = 15000) {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > until) throw new Error(`${what}: ${e.message}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

const userDataDir = mkdtempSync(join(tmpdir(), "hawser-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.HAWSER_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1280, height: 800 },
});
context.setDefaultTimeout(15000);

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("dialog", (d) => d.accept());
  const violations = [];
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
  });

  // Signed out: every page sends you to sign in.
  await page.goto(`${base}/ui/`);
  assert.match(page.url(), /\/ui\/signin$/);
  await accessible(page, "sign-in");
  await shot(page, "signin");

  // Alice signs in with the company provider (the mock's login_hint picks her).
  await page.goto(`${base}/ui/auth/login?login_hint=alice`);
  await page.waitForURL(`${base}/ui/`);
  await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor();
  assert.match(await page.locator(".who").innerText(), /alice \(admin\)/);
  check("alice signs in through the provider and is an admin (group hawser-admins)");
  const names = await page.locator("tbody th[scope=row] a").allInnerTexts();
  assert.deepEqual(names.sort(), ["gh", "personal", "plain"]);
  check("the overview lists every connection");
  await accessible(page, "overview");
  await shot(page, "overview");

  // Keyboard: the first Tab reaches the skip link.
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
  check("the skip link is the first stop of the keyboard");

  // 360 px wide: nothing wider than the screen but the scrollable tables.
  await page.setViewportSize({ width: 360, height: 740 });
  assert.ok(
    (await page.evaluate(() => document.documentElement.scrollWidth)) <= 360,
    "the overview is wider than 360 px",
  );
  await shot(page, "overview-360");
  await page.setViewportSize({ width: 1280, height: 800 });
  check("the overview fits 360 px");

  // Authorize the OAuth connection in the browser and land back on its page.
  await page.getByRole("link", { name: "gh", exact: true }).click();
  await page.getByText("Not authorized").waitFor();
  await page.getByRole("button", { name: "Authorize" }).click();
  await page.waitForURL(/\/ui\/connection\?name=gh$/);
  await page.locator(".state.ok", { hasText: "Authorized" }).waitFor();
  check("Authorize runs the flow and comes back to the connection, Authorized");
  await eventually("the replicas serve the authorized connection's tools", async () => {
    await page.reload();
    assert.doesNotMatch(await page.getByRole("heading", { name: /^Tools/ }).innerText(), /\(0\)/);
  });
  check("the authorized connection lists its tools");
  await accessible(page, "connection");
  await shot(page, "connection");

  // API keys: issued (shown once), works, revoked, refused.
  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByLabel("Subject").fill("dave");
  await page.getByLabel("Description").fill("console test");
  await page.getByRole("button", { name: "Issue key" }).click();
  const key = (await page.locator("#new-key").innerText()).trim();
  assert.match(key, /^hwk_/);
  assert.equal(await initializeWith(key), 200);
  check("an issued key is shown once and works");
  await page.goto(`${base}/ui/apikeys`);
  assert.equal(await page.locator("#new-key").count(), 0, "the key is shown again");
  await page.getByRole("button", { name: /^Revoke key hwk_/ }).first().waitFor();
  const prefix = key.slice(0, 12);
  await page.getByRole("button", { name: `Revoke key ${prefix}` }).click();
  await page.getByText("revoked.").waitFor();
  await eventually("a revoked key is refused", async () =>
    assert.equal(await initializeWith(key), 401),
  );
  check("a revoked key is refused");
  await accessible(page, "apikeys");
  await shot(page, "apikeys");

  // Audit: filter to one subject.
  await page.getByRole("link", { name: "Audit" }).click();
  await eventually("bob's calls reach the audit log", async () => {
    await page.goto(`${base}/ui/audit?subject=bob`);
    const subjects = await page.locator("tbody tr td:nth-child(2)").allInnerTexts();
    assert.ok(subjects.length > 0, "no rows yet");
    assert.deepEqual([...new Set(subjects)], ["bob"]);
  });
  await page.goto(`${base}/ui/audit`);
  await page.getByLabel("Subject").fill("bob");
  await page.getByLabel("Outcome").selectOption("failed");
  await page.getByRole("button", { name: "Filter" }).click();
  const failed = await page.locator("tbody tr td:nth-child(2)").allInnerTexts();
  assert.ok(failed.length > 0 && failed.every((s) => s === "bob"), `failed rows: ${failed}`);
  check("the audit log filters to one subject and outcome");
  await accessible(page, "audit");
  await shot(page, "audit");
  // The live tail: a new call appears on top of the open page, without a reload.
  await page.goto(`${base}/ui/audit`);
  await page.locator("#tail-status", { hasText: "Following new events" }).waitFor();
  await accessible(page, "audit with live tail");
  await page.evaluate(() => {
    window.sameDocument = true;
  });
  const marker = `tail-${Date.now()}`;
  await callTool(aliceKey, "plain__echo", { text: marker });
  const rowsOnPage = () =>
    page.locator("tbody#audit-rows tr").evaluateAll((trs) =>
      trs.map((tr) => ({
        id: Number(tr.cells[0].querySelector("a").getAttribute("href").split("/").pop()),
        subject: tr.cells[1].textContent,
        target: tr.cells[4].textContent,
      })),
    );
  const topBefore = Math.max(0, ...(await rowsOnPage()).map((r) => r.id));
  await callTool(aliceKey, "plain__echo", { text: marker });
  await eventually(
    "the new call reaches the open page",
    async () => {
      const fresh = (await rowsOnPage()).filter((r) => r.id > topBefore);
      assert.ok(
        fresh.some((r) => r.subject === "alice" && r.target === "echo"),
        `new rows: ${JSON.stringify(fresh)}`,
      );
    },
    20000,
  );
  await page.locator("#tail-status", { hasText: /new event/ }).waitFor();
  assert.equal(await page.evaluate(() => window.sameDocument), true, "the page reloaded");
  check("the audit page's live tail puts a new call on top without a reload");
  // The tail keeps to the page's filters.
  const tailSubjects = async (query) =>
    page.evaluate(async (q) => {
      const r = await fetch(`/ui/audit/tail?${q}&after=0`);
      const t = document.createElement("template");
      t.innerHTML = await r.text();
      return [...t.content.querySelectorAll("tr td:nth-child(2)")].map((td) => td.textContent);
    }, query);
  const bobs = await tailSubjects("subject=bob");
  assert.ok(bobs.length > 0 && bobs.every((s) => s === "bob"), `tail of subject=bob: ${bobs}`);
  check("the live tail answers only the filtered subject's events");
  await page.locator("tbody tr td a").first().click();
  await page.getByRole("heading", { level: 1, name: /Audit event \d+/ }).waitFor();
  await accessible(page, "audit event");
  await shot(page, "audit-event");

  // Policies: the explain form.
  await page.getByRole("link", { name: "Policies" }).click();
  await page.getByLabel("Subject").fill("alice");
  await page.getByLabel(/^Tool/).fill("plain__echo");
  await page.getByRole("button", { name: "Explain" }).click();
  assert.match(await page.locator("#verdict").innerText(), /yes/);
  check("explain answers for a caller and a tool");
  await accessible(page, "policies");
  await shot(page, "policies");

  // My connections: alice connects her own account on the per-user connection,
  // calls it as herself, disconnects, and is asked to consent again.
  const mine = () => page.locator("tbody tr", { has: page.getByRole("link", { name: "personal", exact: true }) });
  await page.getByRole("link", { name: "My connections" }).click();
  await page.getByRole("heading", { level: 1, name: "My connections" }).waitFor();
  await mine().getByText("consent required").waitFor();
  const before = await callTool(aliceKey, "personal__whoami");
  assert.equal(before.isError, true, `before consent: ${JSON.stringify(before)}`);
  assert.match(textOf(before), /https?:\/\//, "the refusal carries a consent link");
  check("a per-user connection not yet connected asks for consent");
  await page.getByRole("link", { name: "Connect personal" }).click();
  await page.getByRole("heading", { level: 1, name: "Connect personal" }).waitFor();
  await accessible(page, "consent");
  await page.getByRole("button", { name: "Connect personal" }).click();
  await page.getByText("Account connected").waitFor();
  await page.goto(`${base}/ui/me`);
  await mine().locator(".state.ok", { hasText: "connected" }).waitFor();
  await eventually("the connected account is used on every replica", async () => {
    const after = await callTool(aliceKey, "personal__whoami");
    assert.notEqual(after.isError, true, textOf(after));
    assert.match(textOf(after), /clientId/);
  });
  check("Connect runs the consent in the browser: My connections says connected, the tool answers");
  await accessible(page, "my connections");
  await shot(page, "my-connections");
  await page.getByRole("button", { name: "Disconnect personal" }).click();
  await page.waitForURL(/\/ui\/me\?disconnected=personal$/);
  await page.getByText("Disconnected from personal.").waitFor();
  await mine().getByText("consent required").waitFor();
  assert.equal(await page.getByRole("button", { name: "Disconnect personal" }).count(), 0);
  await eventually("every replica forgets the disconnected account", async () => {
    const again = await callTool(aliceKey, "personal__whoami");
    assert.equal(again.isError, true, `after disconnect: ${JSON.stringify(again)}`);
    assert.match(textOf(again), /https?:\/\//);
  });
  check("Disconnect: not connected any more, and the tool asks for consent again");

  // Sessions: this sign-in, and signing out everywhere.
  await page.getByRole("link", { name: "Sessions" }).click();
  await page.getByRole("heading", { level: 1, name: "Sessions" }).waitFor();
  await page.getByRole("button", { name: "Sign out everywhere" }).first().waitFor();
  await accessible(page, "sessions");
  await shot(page, "sessions");

  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  await page.waitForURL(/\/ui\/signin$/);
  await page.goto(`${base}/ui/audit`);
  assert.match(page.url(), /\/ui\/signin$/);
  check("sign-out ends the session");

  // Bob is not an admin: his own audit rows only, no API keys page.
  await page.goto(`${base}/ui/auth/login?login_hint=bob`);
  await page.waitForURL(`${base}/ui/`);
  assert.equal(await page.getByRole("link", { name: "API keys" }).count(), 0);
  const denied = await page.goto(`${base}/ui/apikeys`);
  assert.equal(denied.status(), 403);
  await page.goto(`${base}/ui/audit?subject=alice`);
  const seen = await page.locator("tbody tr td:nth-child(2)").allInnerTexts();
  assert.ok(seen.length > 0, "bob sees none of his own rows");
  assert.deepEqual([...new Set(seen)], ["bob"]);
  check("a non-admin sees only their own audit rows and no API keys page");
  const bobsTail = await tailSubjects("subject=alice");
  assert.ok(bobsTail.length > 0, "bob's tail shows none of his own rows");
  assert.deepEqual([...new Set(bobsTail)], ["bob"], "bob's live tail shows other people's rows");
  check("a non-admin's live tail shows only their own rows");

  assert.deepEqual(violations, [], "CSP violations in the console");
  check("no Content-Security-Policy violation");
  console.log(`${checks.length} passed, 0 failed`);
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
