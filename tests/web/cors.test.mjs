// The API called from a page of another origin (docs/API.md, "Pages on other origins"): a
// page of an origin CORS_ALLOWED_ORIGINS lists logs in and sends a message; the same calls
// from an origin it does not list are refused by the browser, and nothing is stored.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  TEST_TIMEOUT_MS,
  api,
  launchBrowser,
  screenshot,
  signUp,
  startPageServer,
  startServer,
  watchPage,
} from './support/harness.mjs';

// The other origins' page: the calls below write what happened into it, for the screenshot.
const PAGE = '<!doctype html><meta charset="utf-8"><title>another origin</title><pre id="log"></pre>';
const PASSWORD = 'correct horse battery';

let server;
let listed; // a page server whose origin the mmchat server allows
let unlisted; // one it does not
let browser;
let alice;
let bob;
let conversation;

before(async () => {
  // One after the other, so that after() closes whatever started, whatever failed.
  listed = await startPageServer(PAGE);
  unlisted = await startPageServer(PAGE);
  browser = await launchBrowser();
  server = await startServer({ env: { CORS_ALLOWED_ORIGINS: listed.origin } });
  alice = await signUp(server, 'alice', 'alice@example.com', PASSWORD);
  bob = await signUp(server, 'bob', 'bob@example.com', PASSWORD);
  const created = await api(server, 'POST', '/api/conversations/private', alice.token, { user_id: bob.user.id });
  assert.equal(created.status, 201);
  conversation = created.body;
}, { timeout: TEST_TIMEOUT_MS });

after(async () => {
  await browser?.close();
  await Promise.all([server?.stop(), listed?.stop(), unlisted?.stop()]);
});

// Runs in the page: logs in as bob with fetch (JSON, so preflighted) and sends content with
// the token it got, or with `token` when given (the login is then still tried). Resolves to
// what each call gave: {status} or {error: the rejection's name}.
function callApiFromPage({ apiUrl, conversationId, content, password, token }) {
  const log = (line) => document.getElementById('log').append(`${line}\n`);
  const call = async (what, path, init) => {
    try {
      const res = await fetch(apiUrl + path, init);
      const body = await res.json();
      log(`${what}: ${res.status}`);
      return { status: res.status, body };
    } catch (e) {
      log(`${what}: ${e.name}: ${e.message}`);
      return { error: e.name };
    }
  };
  return (async () => {
    const login = await call('login', '/api/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'bob', password }),
    });
    const send = await call('send', '/api/messages', {
      method: 'POST',
      headers: { Authorization: `Bearer ${token ?? login.body?.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ conversation_id: conversationId, content }),
    });
    return { login, send };
  })();
}

async function contents() {
  const res = await api(server, 'GET', `/api/conversations/${conversation.id}/messages`, alice.token);
  assert.equal(res.status, 200);
  return res.body.messages.map((m) => m.content);
}

test('a page of a listed origin logs in and sends a message', { timeout: TEST_TIMEOUT_MS }, async () => {
  const page = await browser.newPage();
  const problems = await watchPage(page);
  await page.goto(listed.url);
  const content = 'hello from a listed origin';
  const result = await page.evaluate(callApiFromPage, {
    apiUrl: server.url,
    conversationId: conversation.id,
    content,
    password: PASSWORD,
  });
  await screenshot(page, 'cors-listed-origin');

  assert.equal(result.login.status, 200, JSON.stringify(result.login));
  assert.equal(result.send.status, 201, JSON.stringify(result.send));
  assert.equal(result.send.body.sender_id, bob.user.id);
  assert.deepEqual(await contents(), [content]);
  assert.deepEqual(problems.all(), []);
  await page.close();
});

test('a page of an origin not listed can do neither', { timeout: TEST_TIMEOUT_MS }, async () => {
  const page = await browser.newPage();
  await page.goto(unlisted.url);
  const before = await contents();
  const content = 'hello from an origin not listed';
  // Even holding a valid token: the browser never sends the request its preflight was refused.
  const result = await page.evaluate(callApiFromPage, {
    apiUrl: server.url,
    conversationId: conversation.id,
    content,
    password: PASSWORD,
    token: bob.token,
  });
  await screenshot(page, 'cors-unlisted-origin');

  assert.deepEqual(result, { login: { error: 'TypeError' }, send: { error: 'TypeError' } });
  assert.deepEqual(await contents(), before);
  await page.close();
});
