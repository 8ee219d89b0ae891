// Checks the browser toolchain (scripts/browser-env.sh, lib.mjs) without the ledger: serves pages
// with the ledger's Content-Security-Policy from a throwaway HTTP server, fills a form in
// Chromium, takes screenshots at desktop and phone sizes, and runs axeCheck on a clean page (no
// violations expected) and on a page with known ones (expected found). Exits non-zero on failure.
//   scripts/browser-env.sh && node tests/browser/smoke.mjs
import assert from 'node:assert/strict';
import http from 'node:http';
import { axeCheck, formatViolations, launch, screenshot } from './lib.mjs';

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const page = (title, body) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title><link rel="stylesheet" href="/app.css"></head>
<body><main>${body}</main>
<script>window.inlineRan = true;</script>
<script src="/app.js"></script></body></html>`;

const files = {
  '/': [
    'text/html',
    page(
      'Approve a request',
      `<h1>Approve a request</h1>
<form id="approve" action="/" method="post">
  <label for="approver">Approver</label>
  <input id="approver" name="approver" autocomplete="name">
  <label for="amount">Amount</label>
  <input id="amount" name="amount" inputmode="decimal">
  <button type="submit">Approve</button>
</form>
<p id="result" role="status"></p>
<p>Zoë Ångström — €1 234,50 ✓ “quotes” ½</p>`,
    ),
  ],
  // Known serious and critical violations: an unlabelled input, too little contrast.
  '/bad': [
    'text/html',
    page('Bad', `<h1>Bad</h1><input id="x"><p class="faint">faint text</p>`),
  ],
  '/app.css': [
    'text/css',
    `body { font-family: sans-serif; margin: 2rem; color: #111; background: #fff; }
label, input, button { display: block; margin: .25rem 0; font-size: 1rem; }
.faint { color: #ccc; }`,
  ],
  '/app.js': [
    'text/javascript',
    `window.selfRan = true;
const form = document.getElementById('approve');
form?.addEventListener('submit', (e) => {
  e.preventDefault();
  document.getElementById('result').textContent =
    'Approved by ' + form.approver.value + ' for ' + form.amount.value;
});`,
  ],
};

const server = http.createServer((req, res) => {
  const file = files[new URL(req.url, 'http://x').pathname];
  if (!file) {
    res.writeHead(404, { 'content-security-policy': CSP }).end();
    return;
  }
  res
    .writeHead(200, { 'content-type': `${file[0]}; charset=utf-8`, 'content-security-policy': CSP })
    .end(file[1]);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}`;

const browser = await launch();
try {
  console.log(`chromium ${browser.version()}`);
  for (const [label, viewport] of [
    ['desktop', { width: 1280, height: 800 }],
    ['phone', { width: 390, height: 844 }],
  ]) {
    const context = await browser.newContext({ viewport });
    const tab = await context.newPage();
    const cspErrors = [];
    tab.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/.test(m.text())) cspErrors.push(m.text());
    });
    await tab.goto(base + '/');
    // The CSP is enforced: the page's own script ran, its inline one did not.
    assert.equal(await tab.evaluate(() => window.selfRan), true, "the page's /app.js did not run");
    assert.equal(await tab.evaluate(() => window.inlineRan), undefined, 'the inline script ran: no CSP?');
    await tab.getByLabel('Approver').fill('Zoë Ångström');
    await tab.getByLabel('Amount').pressSequentially('1234.50');
    await tab.getByRole('button', { name: 'Approve' }).click();
    await tab.getByRole('status').filter({ hasText: 'Approved by Zoë Ångström for 1234.50' }).waitFor();
    console.log(`${label}: screenshot ${await screenshot(tab, `smoke-${label}`)}`);

    const clean = await axeCheck(tab);
    console.log(`${label}: axe on / found ${clean.length} serious or critical violations`);
    assert.equal(clean.length, 0, formatViolations(clean));

    await tab.goto(base + '/bad');
    const bad = await axeCheck(tab);
    console.log(`${label}: axe on /bad found:\n${formatViolations(bad)}`);
    const ids = bad.map((v) => v.id);
    assert.ok(ids.includes('label') && ids.includes('color-contrast'), `expected label and color-contrast, got ${ids}`);
    assert.equal(await tab.evaluate(() => window.inlineRan), undefined, 'the inline script ran: no CSP?');
    console.log(`${label}: CSP reports from the page: ${cspErrors.length} (its inline scripts, blocked)`);
    await context.close();
  }
  console.log('smoke: ok');
} finally {
  await browser.close();
  server.close();
}
