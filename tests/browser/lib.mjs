// Helpers for the browser end-to-end tests: Debian's Chromium driven by playwright-core (no
// playwright browser downloads), axe-core accessibility checks that work under the ledger's strict
// Content-Security-Policy, and screenshots. scripts/browser-env.sh installs what this needs.
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

// Without these, Chromium hangs trying to reach Google's services (the machines have no internet),
// and --no-sandbox lets it run as root. playwright adds its own --user-data-dir.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// The impacts axeCheck reports; axe's others are 'moderate' and 'minor'.
export const AXE_IMPACTS = ['serious', 'critical'];

/**
 * Launches headless Chromium: $CHROMIUM, else /usr/bin/chromium (Debian's `chromium`).
 * `options` go to playwright's chromium.launch (their `args` are added to CHROMIUM_ARGS).
 * @returns {Promise<import('playwright-core').Browser>}
 */
export async function launch(options = {}) {
  const { args = [], ...rest } = options;
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    timeout: 60_000,
    ...rest,
  });
}

let axeSource;

/**
 * Runs axe-core on the page's current document and returns its violations of impact 'serious' or
 * 'critical' (axe's result objects: id, impact, help, helpUrl, nodes[{target, html,
 * failureSummary}], ...), [] when there are none.
 *
 * The pages send `script-src 'self'`, which blocks <script> tags with inline text
 * (page.addScriptTag({content})) and eval, and axe.min.js is not served by the page's origin.
 * So axe's source goes in as the expression of page.evaluate: playwright hands it to the DevTools
 * protocol (Runtime.evaluate), which the page's CSP does not govern. Nothing in the page changes
 * but window.axe, and the CSP stays enforced for the page's own scripts. axe runs in the main
 * frame only (iframes: false): the pages under test have none, and axe would otherwise wait for
 * an axe in every frame.
 *
 * `options` go to axe.run (e.g. { runOnly: ['wcag2a', 'wcag2aa'] }); `context` is axe.run's
 * context (default: the whole document).
 */
export async function axeCheck(page, { context, options = {} } = {}) {
  axeSource ??= await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
  // Once per document: a navigation drops window.axe.
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    // A trailing expression makes the evaluation's value a small serializable one.
    await page.evaluate(`${axeSource}\n;typeof window.axe`);
  }
  const violations = await page.evaluate(
    async ([context, options]) => {
      const results = await window.axe.run(context ?? document, {
        iframes: false,
        resultTypes: ['violations'],
        ...options,
      });
      return results.violations;
    },
    [context ?? null, options],
  );
  return violations.filter((v) => AXE_IMPACTS.includes(v.impact));
}

/** A readable summary of axeCheck's violations, one line per failing element, for messages. */
export function formatViolations(violations) {
  return violations
    .flatMap((v) =>
      v.nodes.map((n) => `${v.impact} ${v.id}: ${v.help} — ${n.target.join(' ')} (${v.helpUrl})`),
    )
    .join('\n');
}

/** The directory screenshots go to: $BROWSER_ARTIFACTS, else tests/browser/artifacts. */
export function artifactsDir() {
  return path.resolve(process.env.BROWSER_ARTIFACTS || path.join(here, 'artifacts'));
}

/**
 * Saves a full-page PNG of the page as <artifactsDir>/<name>.png (characters other than letters,
 * digits, '.', '_' and '-' in `name` become '-'), making the directory, and returns its path.
 * `options` go to page.screenshot (e.g. { fullPage: false }).
 */
export async function screenshot(page, name, options = {}) {
  const dir = artifactsDir();
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${String(name).replace(/[^A-Za-z0-9._-]+/g, '-')}.png`);
  await page.screenshot({ fullPage: true, ...options, path: file, type: 'png' });
  return file;
}
