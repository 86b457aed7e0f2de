// The web client's page under its Content-Security-Policy: it loads cleanly, its headers are
// the strict ones, and script put into its DOM (as a message's text would be if it were ever
// inserted as HTML) does not run.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TEST_TIMEOUT_MS, launchBrowser, screenshot, startServer, waitFor, watchPage } from './support/harness.mjs';

let server;
let browser;

// One after the other: with Promise.all, a browser launched beside a server that failed to
// start would never be closed, and would keep this file's process alive.
before(async () => {
  browser = await launchBrowser();
  server = await startServer();
}, { timeout: TEST_TIMEOUT_MS });

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('/ loads with no console error nor CSP violation, under strict headers', { timeout: TEST_TIMEOUT_MS }, async () => {
  const page = await browser.newPage();
  const problems = await watchPage(page);
  const res = await page.goto(`${server.url}/`, { waitUntil: 'networkidle' });
  await screenshot(page, 'security-index');

  assert.equal(res.status(), 200);
  const headers = res.headers();
  const csp = headers['content-security-policy'] ?? '';
  assert.match(csp, /frame-ancestors 'none'/);
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.equal(headers['referrer-policy'], 'no-referrer');
  assert.deepEqual(problems.all(), []);
  await page.close();
});

test('script injected into the page does not run', { timeout: TEST_TIMEOUT_MS }, async () => {
  const page = await browser.newPage();
  const problems = await watchPage(page);
  await page.goto(`${server.url}/`, { waitUntil: 'networkidle' });
  await page.evaluate(() => {
    const script = document.createElement('script');
    script.textContent = 'window.__injectedScriptRan = true';
    document.body.append(script);
    // An inline handler, the other way HTML can carry script.
    const div = document.createElement('div');
    div.innerHTML = '<button id="injected" onclick="window.__injectedHandlerRan = true">x</button>';
    document.body.append(div);
    document.getElementById('injected').click();
  });
  // Both are reported as violations once blocked; then nothing can still be about to run.
  await waitFor(() => problems.cspViolations.length >= 2, { what: 'two CSP violations' });
  await screenshot(page, 'security-injected-script');

  assert.deepEqual(
    await page.evaluate(() => [window.__injectedScriptRan, window.__injectedHandlerRan]),
    [undefined, undefined],
  );
  assert.deepEqual(problems.cspViolations.map((v) => v.directive).sort(), ['script-src-attr', 'script-src-elem']);
  await page.close();
});
