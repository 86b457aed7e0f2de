// What the browser tests share: a real mmchat server of their own, REST calls to it, a headless
// Chromium (Debian's, driven by playwright-core), screenshots, and a watch on a page's console
// errors and Content-Security-Policy violations.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const ARTIFACTS_DIR = path.join(REPO_ROOT, 'build/web-artifacts');
// Give it to each test and hook (`test(name, {timeout: TEST_TIMEOUT_MS}, fn)`): Debian's
// Node 18 has no --test-timeout, and Node 20's bounds a whole file, not each test.
export const TEST_TIMEOUT_MS = 60_000;

/** Resolves once predicate() returns a truthy value (which it resolves to); polls. */
export async function waitFor(predicate, { timeoutMs = 5000, what = 'a condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Starts ./build/mmchat (or $MMCHAT_BIN) on 127.0.0.1 with a fresh SQLite database in a
 * temporary directory, verification codes in its log and no rate limits on signup and login.
 * `env` adds or overrides variables; a value of null removes a default.
 * Resolves to {url, port, dir, pid, codeFor(email), log(), stop()} once /healthz answers; stop()
 * ends the server and removes its directory, and rejects if the server had died before.
 */
export async function startServer({ env = {} } = {}) {
  const bin = path.resolve(REPO_ROOT, process.env.MMCHAT_BIN ?? 'build/mmchat');
  const dir = await mkdtemp(path.join(tmpdir(), 'mmchat-web-'));
  const vars = {
    PATH: process.env.PATH,
    HTTP_ADDR: '127.0.0.1:0', // the kernel picks a free port; the log says which
    SQLITE_DSN: path.join(dir, 'chat.db'),
    JWT_SECRET: 'web-test-secret-0123456789abcdef',
    OTP_SENDER: 'log',
    LOG_LEVEL: 'info', // the codes are info lines
    AUTH_RATE_PER_MIN: '0',
    MSG_RATE_PER_SEC: '0',
    HTTP_THREADS: '2',
    WORKER_THREADS: '2',
    ...env,
  };
  for (const [k, v] of Object.entries(vars)) if (v == null) delete vars[k];
  // The server's own directory as its working directory, so that no developer's ./.env applies.
  const child = spawn(bin, [], { cwd: dir, env: vars, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let exited = null;
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exitedPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve((exited = signal ?? code)));
    child.on('error', (e) => resolve((exited = e.message))); // e.g. no such binary
  });
  const killOnExit = () => child.kill('SIGKILL'); // a test process that dies leaves no server
  process.on('exit', killOnExit);

  // Rejects if the server had exited by itself (a crash), so that the test file fails.
  const stop = async () => {
    process.off('exit', killOnExit);
    const crashed = exited;
    if (exited === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exitedPromise;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
    if (crashed !== null) throw new Error(`the server had exited (${crashed}):\n${output}`);
  };

  try {
    const listening = await waitFor(
      () => exited !== null || /listening on http:\/\/[^ ]*:(\d+)/.exec(output),
      { timeoutMs: 10_000, what: 'the server to listen' },
    );
    if (exited !== null) throw new Error(`the server exited (${exited})`);
    const port = Number(listening[1]);
    const url = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => null))?.ok, {
      what: '/healthz',
    });
    return {
      url,
      port,
      dir,
      pid: child.pid,
      log: () => output,
      // The latest code mailed to email, waiting for one to be logged.
      // `since` (a log() length taken earlier) skips the codes logged before it.
      codeFor: (email, { timeoutMs = 5000, since = 0 } = {}) =>
        waitFor(() => latestCode(output.slice(since), email), { timeoutMs, what: `a code for ${email}` }),
      stop,
    };
  } catch (e) {
    await stop().catch(() => {});
    throw new Error(`${e.message}\n${bin} output:\n${output}`);
  }
}

function latestCode(log, email) {
  const to = `otp: to=${email.toLowerCase()} `; // the server keeps emails in lower case
  const line = log.split('\n').findLast((l) => l.includes(to));
  return line && /body="[^"\d]*(\d+)/.exec(line)?.[1];
}

/**
 * One REST call. Resolves to {status, headers (a Headers), body (parsed JSON, else text,
 * null when empty)}; never rejects on an error status.
 */
export async function api(server, method, urlPath, token, body) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(server.url + urlPath, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed = text || null;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, body: parsed };
}

/** Creates a verified account (initiate, code from the log, verify); resolves to {token, user}. */
export async function signUp(server, username, email, password) {
  const started = await api(server, 'POST', '/api/signup/initiate', null, { username, email, password });
  if (started.status !== 202) throw new Error(`signup/initiate ${started.status}: ${JSON.stringify(started.body)}`);
  const otp = await server.codeFor(email);
  const verified = await api(server, 'POST', '/api/signup/verify', null, { email, otp });
  if (verified.status !== 201) throw new Error(`signup/verify ${verified.status}: ${JSON.stringify(verified.body)}`);
  return { token: verified.body.token, user: verified.body.user };
}

/**
 * A headless Chromium: Debian's (/usr/bin/chromium, or $CHROMIUM_BIN), since Playwright's own
 * download is not used. Playwright passes --no-sandbox by default (chromiumSandbox: false),
 * which Chromium needs when it runs as root, as in CI containers.
 */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
    headless: true,
    // A container's /dev/shm (64 MiB under Docker) is too small for Chromium's shared memory.
    args: ['--disable-dev-shm-usage'],
  });
}

/** Saves a full-page PNG as build/web-artifacts/<name>.png; resolves to its path. */
export async function screenshot(page, name) {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name.replace(/[^\w.-]+/g, '-')}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * Watches a page, from now on (call it before page.goto): console errors (but for the
 * browser's own /favicon.ico 404), uncaught exceptions and Content-Security-Policy violations
 * (the `securitypolicyviolation` events of every document the page loads). Resolves to
 * {consoleErrors: [text], pageErrors: [text], cspViolations: [{directive, blockedURI, sample,
 * sourceFile, line}], all()}; all() is every one of them as text, [] when the page was clean.
 */
export async function watchPage(page) {
  const problems = {
    consoleErrors: [],
    pageErrors: [],
    cspViolations: [],
    all: () => [
      ...problems.consoleErrors.map((t) => `console error: ${t}`),
      ...problems.pageErrors.map((t) => `uncaught: ${t}`),
      ...problems.cspViolations.map((v) => `CSP violation: ${JSON.stringify(v)}`),
    ],
  };
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const { url } = m.location();
    // Headless Chromium reports the 404 of the /favicon.ico it asks for by itself (the page
    // names no icon); that request is the browser's, not the page's.
    if (url && new URL(url).pathname === '/favicon.ico') return;
    problems.consoleErrors.push(`${m.text()} (${url})`);
  });
  page.on('pageerror', (e) => problems.pageErrors.push(String(e)));
  // Init scripts and bindings come through the DevTools protocol: the page's CSP does not
  // apply to them.
  await page.exposeBinding('__mmchatCspViolation', (_source, v) => problems.cspViolations.push(v));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__mmchatCspViolation({
        directive: e.effectiveDirective,
        blockedURI: e.blockedURI,
        sample: e.sample,
        sourceFile: e.sourceFile,
        line: e.lineNumber,
      });
    });
  });
  return problems;
}

/**
 * Serves one HTML page at every path from 127.0.0.1 on a port of its own: another origin
 * than the mmchat server. Resolves to {url, port, origin, stop()}.
 */
export async function startPageServer(html) {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(html);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  const origin = `http://127.0.0.1:${port}`;
  return {
    url: `${origin}/`,
    port,
    origin,
    stop: () => {
      const closed = new Promise((resolve) => server.close(resolve));
      server.closeAllConnections(); // a browser's keep-alive connections would hold close() up
      return closed;
    },
  };
}
