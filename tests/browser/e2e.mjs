// The web page's end-to-end scenarios in headless Chromium, against a real `ledger serve` that
// tests/it/browser.rs started and filled (it passes the server's address, the principals' tokens
// and the items' ids in LEDGER_E2E). Phase "main" works the page as each role; phase "tampered"
// runs against a rewritten copy of the same log. Every page is checked with axe-core and
// photographed at 1280×800 and 390×844 (tests/browser/artifacts, or $BROWSER_ARTIFACTS).
// Exits non-zero if any scenario fails.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { launch, screenshot, axeCheck, formatViolations } from './lib.mjs';

const config = JSON.parse(process.env.LEDGER_E2E);
const phase = process.env.LEDGER_E2E_PHASE || 'main';
const { base, tokens, items } = config;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const browser = await launch();
const failures = [];

async function scenario(name, body) {
  const started = Date.now();
  try {
    await body();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failures.push(name);
    console.log(`FAIL ${name}\n${error.stack || error}`);
  }
}

/** A new browser context (its own cookies) with a page, signed in as `who` by the form. */
async function signedIn(who, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  page.on('pageerror', (error) => console.log(`page error (${who}): ${error.message}`));
  await page.goto(`${base}/ui/sign-in`);
  await page.fill('#token', tokens[who]);
  await Promise.all([page.waitForURL((url) => !url.pathname.endsWith('/sign-in')), page.click('button[type=submit]')]);
  return { context, page };
}

/** Checks the page with axe at both sizes, and photographs it at both. */
async function look(page, name) {
  const size = page.viewportSize();
  for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    await page.setViewportSize(viewport);
    await screenshot(page, `${phase}-${name}-${label}`);
    const violations = await axeCheck(page);
    assert.equal(violations.length, 0, `axe on ${name} (${label}): ${formatViolations(violations)}`);
  }
  await page.setViewportSize(size);
}

/** The form POSTed from inside the page, as a hostile script or a crafted page would. */
async function postFromPage(page, path, fields) {
  return page.evaluate(async ({ path, fields }) => {
    const response = await fetch(path, { method: 'POST', body: new URLSearchParams(fields), credentials: 'same-origin', redirect: 'manual' });
    return `${response.status} ${await response.text()}`;
  }, { path, fields });
}

async function csrfOf(page) {
  return page.$eval('input[name=csrf]', (input) => input.value);
}

if (phase === 'main') {
  await scenario('sign-in page: an unknown token is refused, and the page is accessible', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    await page.goto(`${base}/ui/queue`);
    assert.match(page.url(), /\/ui\/sign-in\?next=/, 'an anonymous visit goes to sign-in');
    await look(page, 'sign-in');
    await page.fill('#token', 'not-a-token');
    const [response] = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    assert.equal(response.status(), 401);
    assert.match(await page.textContent('.problem'), /unknown or was revoked/);
    const response2 = await page.goto(`${base}/ui/queue`);
    assert.equal(response2.headers()['content-security-policy'].includes("script-src 'self'"), true);
    await context.close();
  });

  await scenario('a reviewer claims and edit-approves with the keyboard alone; the agent long-poll gets the edit', async () => {
    // The agent waits for the decision before the reviewer starts.
    const decision = fetch(`${base}/v1/items/${items.keyboard}/decision?wait=120s`, {
      headers: { authorization: `Bearer ${tokens.drafter}` },
    }).then((response) => response.json());
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    await page.goto(`${base}/ui/sign-in`);
    await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'token');
    await page.keyboard.type(tokens.rita);
    await Promise.all([page.waitForURL('**/ui/queue'), page.keyboard.press('Enter')]);
    // The most urgent item is selected first.
    await page.waitForSelector(`tr.selected[data-id="${items.keyboard}"]`);
    await look(page, 'queue');
    await page.keyboard.press('?');
    await page.waitForSelector('#help[open]');
    await screenshot(page, 'main-keyboard-help-desktop');
    await page.keyboard.press('Escape');
    await page.waitForSelector('#help:not([open])', { state: 'attached' });
    await Promise.all([page.waitForURL(/\/ui\/queue\?done=Claimed/), page.keyboard.press('c')]);
    await page.waitForSelector(`tr.selected[data-id="${items.keyboard}"] strong:text("you")`);
    await Promise.all([page.waitForURL(`**/ui/items/${items.keyboard}#edit`), page.keyboard.press('e')]);
    await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'edit-output');
    await look(page, 'item');
    await page.focus('#edit-output');
    await page.keyboard.press('Control+A');
    const edited = 'Dear Mr Smith,\n\nthank you for your patience. Your order shipped today.';
    await page.keyboard.type(edited);
    await Promise.all([page.waitForURL(`**/ui/items/${items.keyboard}/edit-preview`), page.keyboard.press('Control+Enter')]);
    assert.match(await page.textContent('.diff'), /shipped today/);
    assert.equal(await page.$$eval('.diff .del', (lines) => lines.length) > 0, true, 'the diff shows a removed line');
    await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'confirm-edit');
    await look(page, 'edit-preview');
    await page.focus('#confirm-edit');
    await Promise.all([page.waitForURL(/\/ui\/queue\?done=Edited/), page.keyboard.press('Enter')]);
    const answer = await decision;
    assert.equal(answer.decision.outcome, 'edited_and_approved');
    assert.equal(answer.decision.final_output, edited);
    assert.equal(answer.decision.decided_by.join(), 'rita');
    // The session token never reached the page's JavaScript.
    assert.equal(await page.evaluate(() => document.cookie), '');
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    await context.close();
  });

  await scenario('two reviewers: the second sees who decided first, and items leave its queue live', async () => {
    const first = await signedIn('rita');
    const second = await signedIn('omar');
    await first.page.goto(`${base}/ui/items/${items.conflict}`);
    await second.page.goto(`${base}/ui/items/${items.conflict}`);
    await Promise.all([first.page.waitForURL(/done=Approved/), first.page.click('#approve-button')]);
    const [response] = await Promise.all([second.page.waitForNavigation(), second.page.click('#approve-button')]);
    assert.equal(response.status(), 409);
    const outcome = await second.page.textContent('#outcome');
    assert.match(outcome, /already decided: approved by rita/);
    assert.match(outcome, /Nothing was written/);
    await look(second.page, 'conflict');
    // The second reviewer watches the queue; the first decides an item in it.
    await second.page.goto(`${base}/ui/queue`);
    await second.page.waitForSelector(`tr[data-id="${items.live}"]`);
    await second.page.evaluate(() => { window.__notReloaded = true; });
    await first.page.goto(`${base}/ui/items/${items.live}`);
    await Promise.all([first.page.waitForURL(/done=Approved/), first.page.click('#approve-button')]);
    await second.page.waitForSelector(`tr[data-id="${items.live}"]`, { state: 'detached', timeout: 15_000 });
    assert.equal(await second.page.evaluate(() => window.__notReloaded), true, 'the queue changed without a reload');
    assert.match(await second.page.textContent('#live-status'), /1 gone/);
    await first.context.close();
    await second.context.close();
  });

  await scenario('an AI output and a comment holding <script> and <img onerror> render as text', async () => {
    const { context, page } = await signedIn('rita');
    await page.goto(`${base}/ui/items/${items.hostile}`);
    await page.waitForTimeout(300);
    assert.equal(await page.evaluate(() => window.__xss), undefined, 'no payload ran');
    const shown = await page.textContent('#output');
    assert.match(shown, /<script>window.__xss = 1<\/script>/);
    assert.match(shown, /<img src=x onerror=/);
    assert.equal(await page.$$eval('#output script, #output img, .comments script', (found) => found.length), 0);
    assert.equal(await page.$$eval('a[href^="javascript"]', (found) => found.length), 0);
    assert.match(await page.textContent('.comments'), /<script>window.__xss = 4<\/script> a comment/);
    await look(page, 'hostile-item');
    await context.close();
  });

  await scenario('forms without the CSRF token, or from a role that may not decide, are refused and write nothing', async () => {
    const reviewer = await signedIn('rita');
    await reviewer.page.goto(`${base}/ui/items/${items.refused}`);
    assert.match(await postFromPage(reviewer.page, `/ui/items/${items.refused}/claim`, {}), /^403 [\s\S]*missing its security token/, 'no token');
    assert.match(await postFromPage(reviewer.page, `/ui/items/${items.refused}/claim`, { csrf: 'f'.repeat(32) }), /^403 [\s\S]*missing its security token/, 'a wrong token');
    await reviewer.context.close();
    for (const who of ['olga', 'drafter']) {
      const { context, page } = await signedIn(who);
      await page.goto(`${base}/ui/items/${items.refused}`);
      assert.equal(await page.$$eval('#claim-button, #approve-button, #edit-form, #reject-form, #changes-form', (found) => found.length), 0, `${who} sees no decide controls`);
      const csrf = await csrfOf(page);
      assert.match(await postFromPage(page, `/ui/items/${items.refused}/approve`, { csrf }), /^403 [\s\S]*may not approve items/, `${who} approving`);
      assert.match(await postFromPage(page, `/ui/items/${items.refused}/claim`, { csrf }), /^403 [\s\S]*may not claim items/, `${who} claiming`);
      await context.close();
    }
    const { context, page } = await signedIn('drafter');
    assert.match(await page.textContent('main'), /Agents submit items/);
    await context.close();
  });

  await scenario("an auditor sees every event of a decided item verified, downloads its bundle and verifies the log", async () => {
    const { context, page } = await signedIn('olga');
    assert.match(page.url(), /\/ui\/audit$/);
    await page.goto(`${base}/ui/items/${items.audited}/record`);
    const marks = await page.$$eval('#record tbody tr', (rows) => rows.map((row) => row.dataset.mark));
    assert.ok(marks.length >= 3, `the record lists the item's events: ${marks}`);
    assert.deepEqual(new Set(marks), new Set(['verified']));
    assert.match(await page.getAttribute('#verdict', 'class'), /good/);
    await look(page, 'record');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#bundle-link')]);
    const bundle = JSON.parse(await readFile(await download.path(), 'utf8'));
    assert.equal(bundle.events.length, marks.length);
    assert.ok(bundle.checkpoint.note.length > 0);
    await page.goto(`${base}/ui/audit`);
    assert.ok((await page.$$('#checkpoints tbody tr')).length >= 1);
    await look(page, 'checkpoints');
    await Promise.all([page.waitForNavigation(), page.click('#verify-button')]);
    assert.match(await page.getAttribute('#verify-result', 'class'), /good/);
    assert.match(await page.textContent('#verify-result'), /every hash and link holds/);
    await look(page, 'verified');
    await context.close();
  });

  await scenario('an analyst sees override rates with intervals, the trend and calibration as charts', async () => {
    const { context, page } = await signedIn('anna');
    assert.match(page.url(), /\/ui\/analytics$/);
    assert.ok((await page.$$('svg.chart')).length >= 2, 'at least two charts');
    assert.match(await page.textContent('#slices-title + figure'), /gpt-x · customer-reply/);
    await look(page, 'analytics');
    // An analyst has no queue and no items.
    const response = await page.goto(`${base}/ui/items/${items.refused}`);
    assert.equal(response.status(), 403);
    await context.close();
  });

  await scenario('an admin adds a reviewer, whose token (shown once) opens the queue', async () => {
    const { context, page } = await signedIn('admin');
    await look(page, 'admin');
    await page.fill('#p-name', 'nora');
    await page.selectOption('#p-role', 'reviewer');
    await page.fill('#p-queues', 'support');
    const [response] = await Promise.all([page.waitForNavigation(), page.click('#add-button')]);
    assert.equal(response.status(), 201);
    const token = await page.inputValue('#new-token');
    assert.match(token, /^ldg_/);
    await look(page, 'admin-new-token');
    await page.goto(`${base}/ui/admin`);
    assert.equal(await page.$$eval('#new-token', (found) => found.length), 0, 'the token is shown only once');
    tokens.nora = token;
    const nora = await signedIn('nora');
    assert.match(nora.page.url(), /\/ui\/queue$/);
    assert.ok((await nora.page.$$('#queue-rows tr[data-id]')).length >= 1, 'the new reviewer sees the queue');
    // Revoked: the session ends at once.
    await Promise.all([page.waitForNavigation(), page.click('tr[data-name="nora"] button')]);
    const after = await nora.page.goto(`${base}/ui/queue`);
    assert.match(after.url(), /\/ui\/sign-in/);
    await nora.context.close();
    await context.close();
  });
}

if (phase === 'tampered') {
  await scenario('after the log was rewritten, the record and the verify action fail visibly', async () => {
    const { context, page } = await signedIn('olga');
    await page.goto(`${base}/ui/items/${items.audited}/record`);
    assert.match(await page.getAttribute('#verdict', 'class'), /bad/);
    assert.match(await page.textContent('#verdict'), /NOT VERIFIED/);
    const marks = await page.$$eval('#record tbody tr', (rows) => rows.map((row) => row.dataset.mark));
    assert.ok(marks.includes('failed'), `failed marks shown: ${marks}`);
    assert.match(await page.textContent('#record'), /FAILED/);
    await look(page, 'record');
    await page.goto(`${base}/ui/audit`);
    await Promise.all([page.waitForNavigation(), page.click('#verify-button')]);
    assert.match(await page.getAttribute('#verify-result', 'class'), /bad/);
    assert.match(await page.textContent('#verify-result'), /VERIFICATION FAILED[\s\S]*the log was altered after it was signed/);
    await look(page, 'verify');
    await context.close();
  });
}

await browser.close();
if (failures.length > 0) {
  console.log(`${failures.length} browser scenario(s) failed: ${failures.join('; ')}`);
  process.exit(1);
}
console.log(`all browser scenarios of phase ${phase} passed`);
