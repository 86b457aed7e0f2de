// The web client at / driven as people use it, in Debian's Chromium: signing up with the
// emailed code, chatting both ways, groups, a network cut, hostile text, a reload, rich
// messages, the account screens and a phone's width. Each test has its own server.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { TEST_TIMEOUT_MS, api, launchBrowser, screenshot, signUp, startServer, waitFor, watchPage } from './support/harness.mjs';

let server;
let browser;
let watched = [];

// One after the other, so that a failed start leaves nothing running that afterEach misses
// (a browser left open would keep the test process alive).
beforeEach(async () => {
  server = await startServer();
  browser = await launchBrowser();
  watched = [];
}, { timeout: TEST_TIMEOUT_MS });

afterEach(async () => {
  await browser?.close();
  await server?.stop();
  browser = server = null;
}, { timeout: TEST_TIMEOUT_MS });

/** A new browser profile (its own localStorage) with one page on the client, watched for errors. */
async function person(options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  page.on('dialog', (d) => d.accept()); // confirm() for delete and leave
  watched.push(await watchPage(page));
  await page.goto(`${server.url}/`);
  return { context, page };
}

function assertNoPageProblems() {
  assert.deepEqual(watched.flatMap((w) => w.all()), []);
}

async function uiSignUp(page, username, email, password) {
  await page.getByRole('button', { name: 'Sign up' }).click();
  const form = page.locator('#signup-form');
  await form.getByLabel('Username').fill(username);
  await form.getByLabel('Email').fill(email);
  await form.getByLabel('Password').fill(password);
  await form.getByRole('button', { name: 'Send me a code' }).click();
  const code = await server.codeFor(email);
  await page.locator('#verify-form').getByLabel('Verification code').fill(code);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#chat').waitFor();
  await waitForConnected(page);
}

async function uiLogin(page, login, password) {
  const form = page.locator('#login-form');
  await form.getByLabel('Username or email').fill(login);
  await form.getByLabel('Password').fill(password);
  await form.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#chat').waitFor();
  await waitForConnected(page);
}

function waitForConnected(page) {
  return page.locator('#connection[data-state="open"]').waitFor();
}

function conversationButton(page, name) {
  return page.locator('#conversation-list .conversation-item').filter({ has: page.locator('.name', { hasText: name }) });
}

async function openConversation(page, name) {
  await conversationButton(page, name).click();
  await page.locator('#conversation-title', { hasText: name }).waitFor();
}

async function send(page, text) {
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.getByLabel('Message', { exact: true }).press('Enter');
}

/** The texts of the messages shown, in order. */
function shownTexts(page) {
  return page.locator('#messages li.message .text').allTextContents();
}

/** The message shown with exactly this text. */
function message(page, text) {
  return page.locator('#messages li.message').filter({ has: page.locator('.text').getByText(text, { exact: true }) });
}

/** A 64×64 PNG, drawn by the browser. */
async function drawnPng(page) {
  const dataUrl = await page.evaluate(() => {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 64;
    const g = canvas.getContext('2d');
    const gradient = g.createLinearGradient(0, 0, 64, 64);
    gradient.addColorStop(0, '#24466b');
    gradient.addColorStop(1, '#7fc8f8');
    g.fillStyle = gradient;
    g.fillRect(0, 0, 64, 64);
    return canvas.toDataURL('image/png');
  });
  return Buffer.from(dataUrl.split(',')[1], 'base64');
}

/** Users made through the API (the signup screens have a test of their own). */
async function accounts(...names) {
  const made = {};
  for (const name of names) made[name] = await signUp(server, name, `${name}@example.com`, `password-${name}`);
  return made;
}

async function loggedIn(name, options) {
  const p = await person(options);
  await uiLogin(p.page, name, `password-${name}`);
  return p;
}

test('two people sign up, find each other, chat both ways, see typing, read ticks and presence', { timeout: TEST_TIMEOUT_MS }, async () => {
  const alice = await person();
  await screenshot(alice.page, 'login');
  await uiSignUp(alice.page, 'alice', 'alice@example.com', 'password-alice');
  const bob = await person();
  await uiSignUp(bob.page, 'bob', 'bob@example.com', 'password-bob');

  // Alice finds bob by name and starts the conversation.
  await alice.page.getByLabel('Find people').fill('bo');
  await alice.page.locator('#people-results').getByRole('button', { name: 'bob' }).click();
  await alice.page.locator('#conversation-title', { hasText: 'bob' }).waitFor();
  await send(alice.page, 'Hi Bob!');
  await message(alice.page, 'Hi Bob!').waitFor();

  // Bob sees it arrive in his list, unread, and opens it.
  const item = conversationButton(bob.page, 'alice');
  await item.locator('.badge', { hasText: '1' }).waitFor();
  assert.equal(await item.locator('.preview').textContent(), 'alice: Hi Bob!');
  await openConversation(bob.page, 'alice');
  await message(bob.page, 'Hi Bob!').waitFor();
  await item.locator('.badge').waitFor({ state: 'detached' });

  // Bob read it: alice's tick turns to read. Bob is online, and shown so.
  await message(alice.page, 'Hi Bob!').locator('.ticks[aria-label="read"]').waitFor();
  await alice.page.locator('#conversation-subtitle', { hasText: 'online' }).waitFor();
  await conversationButton(alice.page, 'bob').locator('.dot[aria-label="online"]').waitFor();

  // Typing shows on the other side, and goes with the message.
  await bob.page.getByLabel('Message', { exact: true }).pressSequentially('Hello ');
  await alice.page.locator('#typing', { hasText: 'bob is typing' }).waitFor();
  await screenshot(alice.page, 'typing');
  await bob.page.getByLabel('Message', { exact: true }).pressSequentially('Alice');
  await bob.page.getByLabel('Message', { exact: true }).press('Enter');
  await message(alice.page, 'Hello Alice').waitFor();
  assert.equal(await alice.page.locator('#typing').textContent(), ''); // the message ends the typing
  await message(bob.page, 'Hello Alice').locator('.ticks[aria-label="read"]').waitFor();
  assert.deepEqual(await shownTexts(alice.page), ['Hi Bob!', 'Hello Alice']);
  assert.deepEqual(await shownTexts(bob.page), ['Hi Bob!', 'Hello Alice']);
  await screenshot(alice.page, 'conversation');

  // Bob leaves: alice sees him go offline, with a last-seen time.
  await bob.context.close();
  await alice.page.locator('#conversation-subtitle', { hasText: 'last seen' }).waitFor();
  await conversationButton(alice.page, 'bob').locator('.dot[aria-label="offline"]').waitFor();
  assertNoPageProblems();
});

test('a group of three: created, renamed, re-roled; a removed member sees it go', { timeout: TEST_TIMEOUT_MS }, async () => {
  await accounts('alice', 'bob', 'carol');
  const alice = await loggedIn('alice');
  const bob = await loggedIn('bob');
  const carol = await loggedIn('carol');

  await alice.page.getByRole('button', { name: 'New group' }).click();
  const dialog = alice.page.locator('#group-dialog');
  await dialog.getByLabel('Group name').fill('Trip');
  await dialog.getByLabel('Members').fill('bob, Carol');
  await dialog.getByRole('button', { name: 'Create group' }).click();
  await alice.page.locator('#conversation-title', { hasText: 'Trip' }).waitFor();
  await send(alice.page, 'Where shall we go?');

  for (const p of [bob, carol]) {
    await openConversation(p.page, 'Trip');
    await message(p.page, 'Where shall we go?').waitFor();
  }
  await send(carol.page, 'The mountains');
  await message(alice.page, 'The mountains').waitFor();

  // Alice (the admin) renames it, makes bob an admin, and removes carol.
  await alice.page.getByRole('button', { name: 'Details' }).click();
  const details = alice.page.locator('#details-dialog');
  await details.getByLabel('Group name').fill('Trip 2027');
  await details.getByRole('button', { name: 'Rename' }).click();
  await conversationButton(bob.page, 'Trip 2027').waitFor();
  await details.getByRole('button', { name: 'Make bob an admin' }).click();
  await details.locator('#member-list li', { hasText: 'bob' }).locator('.role', { hasText: 'admin' }).waitFor();
  await screenshot(alice.page, 'group-details');
  await details.getByRole('button', { name: 'Remove carol' }).click();
  await details.locator('#member-list li', { hasText: 'carol' }).waitFor({ state: 'detached' });
  await details.getByRole('button', { name: 'Close' }).click();

  // Carol, who had it open, sees it go: from the list, and from the screen.
  await carol.page.locator('#conversation-empty', { hasText: 'You are no longer in Trip 2027' }).waitFor();
  await conversationButton(carol.page, 'Trip').waitFor({ state: 'detached' });
  await screenshot(carol.page, 'group-removed');
  // What is said after her removal does not reach her.
  await send(bob.page, 'Just us two now');
  await message(alice.page, 'Just us two now').waitFor();
  assert.equal(await carol.page.locator('#messages li.message', { hasText: 'Just us two now' }).count(), 0);
  assert.equal(await alice.page.locator('#conversation-subtitle').textContent(), '2 members');

  // Bob, now an admin, may leave; alice stays.
  await bob.page.getByRole('button', { name: 'Details' }).click();
  await bob.page.getByRole('button', { name: 'Leave conversation' }).click();
  await conversationButton(bob.page, 'Trip 2027').waitFor({ state: 'detached' });
  await alice.page.locator('#conversation-subtitle', { hasText: '1 members' }).waitFor();
  assertNoPageProblems();
});

test('offline and back: what arrived meanwhile shows once, what was typed is sent once', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { alice: a, bob: b } = await accounts('alice', 'bob');
  const conv = (await api(server, 'POST', '/api/conversations/private', a.token, { user_id: b.user.id })).body;
  await api(server, 'POST', '/api/messages', a.token, { conversation_id: conv.id, content: 'before the cut' });
  const alice = await loggedIn('alice');
  const bob = await loggedIn('bob');
  await openConversation(alice.page, 'bob');
  await openConversation(bob.page, 'alice');
  await message(bob.page, 'before the cut').waitFor();

  await bob.context.setOffline(true);
  await bob.page.locator('#connection[data-state="offline"]').waitFor();
  for (const text of ['while away 1', 'while away 2', 'while away 3']) await send(alice.page, text);
  await message(alice.page, 'while away 3').waitFor();
  await send(bob.page, 'typed offline');
  await bob.page.locator('#messages li.pending', { hasText: 'typed offline' }).waitFor();
  await screenshot(bob.page, 'offline');
  assert.equal(await message(bob.page, 'while away 1').count(), 0);

  await bob.context.setOffline(false);
  await message(bob.page, 'while away 3').waitFor({ timeout: 20_000 });
  await message(alice.page, 'typed offline').waitFor({ timeout: 20_000 });
  await bob.page.locator('#messages li.pending').waitFor({ state: 'detached' });
  const expected = ['before the cut', 'while away 1', 'while away 2', 'while away 3', 'typed offline'];
  assert.deepEqual(await shownTexts(bob.page), expected);
  assert.deepEqual(await shownTexts(alice.page), expected);
  // Stored once, whatever the retries.
  const stored = (await api(server, 'GET', `/api/conversations/${conv.id}/messages`, a.token)).body.messages;
  assert.deepEqual(stored.map((m) => m.content), expected);
  assertNoPageProblems();
});

test('hostile text shows as text; a reload keeps the session and the open conversation', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { alice: a, bob: b } = await accounts('alice', 'bob');
  const hostile = ['<img src=x onerror="window.__pwned=1">', '<script>window.__pwned=2</script>', '"><b>bold</b>'];
  const group = (await api(server, 'POST', '/api/conversations/group', a.token, { name: '<i>group</i>', member_ids: [b.user.id] })).body;
  for (const content of hostile) await api(server, 'POST', '/api/messages', a.token, { conversation_id: group.id, content });

  const bob = await loggedIn('bob');
  await openConversation(bob.page, '<i>group</i>');
  await message(bob.page, '"><b>bold</b>').waitFor();
  assert.deepEqual(await shownTexts(bob.page), hostile);
  assert.equal(await bob.page.locator('#messages img, #messages b, #messages script, #conversation-list i').count(), 0);
  assert.equal(await bob.page.evaluate(() => window.__pwned), undefined);
  await screenshot(bob.page, 'hostile-text');

  await bob.page.reload();
  await bob.page.locator('#conversation-title', { hasText: '<i>group</i>' }).waitFor();
  await waitForConnected(bob.page);
  assert.deepEqual(await shownTexts(bob.page), hostile);
  assert.equal(await bob.page.locator('#auth').isVisible(), false);
  assertNoPageProblems();
});

test('replies, edits, deletions, reactions, an image and search', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { alice: a, bob: b } = await accounts('alice', 'bob');
  await api(server, 'POST', '/api/conversations/private', a.token, { user_id: b.user.id });
  const alice = await loggedIn('alice');
  const bob = await loggedIn('bob');
  await openConversation(alice.page, 'bob');
  await openConversation(bob.page, 'alice');

  await send(alice.page, 'Lunch at noon?');
  await message(bob.page, 'Lunch at noon?').waitFor();
  // Bob replies to it, and reacts.
  await message(bob.page, 'Lunch at noon?').hover();
  await message(bob.page, 'Lunch at noon?').getByRole('button', { name: 'Reply' }).click();
  await send(bob.page, 'Yes, see you there');
  await message(alice.page, 'Yes, see you there').locator('.quote', { hasText: 'You: Lunch at noon?' }).waitFor();
  await message(bob.page, 'Yes, see you there').locator('.quote', { hasText: 'alice: Lunch at noon?' }).waitFor();
  await message(bob.page, 'Lunch at noon?').getByRole('button', { name: 'React 👍' }).click();
  await message(alice.page, 'Lunch at noon?').locator('.reaction', { hasText: '👍 1' }).waitFor();

  // Alice edits her message; bob deletes his reply.
  await message(alice.page, 'Lunch at noon?').getByRole('button', { name: 'Edit' }).click();
  await send(alice.page, 'Lunch at one?');
  await message(bob.page, 'Lunch at one?').locator('.edited').waitFor();
  await message(bob.page, 'Yes, see you there').getByRole('button', { name: 'Delete' }).click();
  await alice.page.locator('#messages .deleted').waitFor();
  assert.equal(await message(alice.page, 'Yes, see you there').count(), 0);

  // An image: uploaded, sent, previewed on the other side, and downloadable.
  const png = await drawnPng(alice.page);
  await alice.page.getByLabel('Attach files').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: png });
  await send(alice.page, 'a picture');
  const figure = message(bob.page, 'a picture').locator('figure img[alt="dot.png"]');
  await figure.waitFor();
  await waitFor(() => figure.evaluate((img) => img.complete && img.naturalWidth === 64), { what: 'the image to load' });
  const href = await message(bob.page, 'a picture').locator('a.attachment').getAttribute('href');
  const download = await fetch(new URL(href, server.url));
  assert.equal(download.status, 200);
  assert.deepEqual(Buffer.from(await download.arrayBuffer()), png);

  // Search finds the edited text, not the old one.
  await bob.page.getByLabel('Search messages').fill('one');
  await bob.page.getByLabel('Search messages').press('Enter');
  await bob.page.locator('#search-results li', { hasText: 'Lunch at one?' }).waitFor();
  await bob.page.getByLabel('Search messages').fill('noon');
  await bob.page.getByLabel('Search messages').press('Enter');
  await bob.page.locator('#search-results li', { hasText: 'No message matches.' }).waitFor();
  await screenshot(bob.page, 'rich-messages');
  assertNoPageProblems();
});

test('history loads page by page, going back in time', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { alice: a, bob: b } = await accounts('alice', 'bob');
  const conv = (await api(server, 'POST', '/api/conversations/private', a.token, { user_id: b.user.id })).body;
  for (let i = 1; i <= 120; i++) {
    await api(server, 'POST', '/api/messages', a.token, { conversation_id: conv.id, content: `number ${i}` });
  }
  const bob = await loggedIn('bob');
  await openConversation(bob.page, 'alice');
  await message(bob.page, 'number 120').waitFor();
  assert.equal(await bob.page.locator('#messages li.message').count(), 50);
  await bob.page.locator('#messages').evaluate((list) => { list.scrollTop = 0; });
  await message(bob.page, 'number 71').waitFor();
  await bob.page.getByRole('button', { name: 'Load older messages' }).click();
  await message(bob.page, 'number 1').waitFor();
  const texts = await shownTexts(bob.page);
  assert.deepEqual(texts, Array.from({ length: 120 }, (_, i) => `number ${i + 1}`));
  await bob.page.getByRole('button', { name: 'Load older messages' }).waitFor({ state: 'detached' });
  assertNoPageProblems();
});

test('forgotten password, log out and in, profile; at a phone width', { timeout: TEST_TIMEOUT_MS }, async () => {
  await accounts('alice', 'bob');
  const phone = { viewport: { width: 390, height: 760 }, isMobile: true, hasTouch: true };
  const alice = await person(phone);
  const page = alice.page;
  await page.getByRole('button', { name: 'Forgot password' }).click();
  await page.locator('#forgot-form').getByLabel('Email').fill('alice@example.com');
  const logged = server.log().length; // the signup's code is in the log too
  await page.locator('#forgot-form').getByRole('button', { name: 'Send me a code' }).click();
  const code = await server.codeFor('alice@example.com', { since: logged });
  await page.locator('#reset-form').getByLabel('Verification code').fill(code);
  await page.locator('#reset-form').getByLabel('New password').fill('a-new-password');
  await page.getByRole('button', { name: 'Set password' }).click();
  await page.locator('#auth-message', { hasText: 'Your password is set' }).waitFor();
  await uiLogin(page, 'alice@example.com', 'a-new-password');

  await page.getByRole('button', { name: 'Profile' }).click();
  await page.locator('#profile-dialog').getByLabel('Username').fill('alice2');
  await page.locator('#profile-dialog').getByLabel('Picture URL').fill('https://example.com/a.png');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#me-name', { hasText: 'alice2' }).waitFor();
  const me = await page.evaluate(() => JSON.parse(localStorage.getItem('mmchat.session')));
  const profile = (await api(server, 'GET', '/api/me', me.token)).body;
  assert.equal(profile.username, 'alice2');
  assert.equal(profile.profile_picture, 'https://example.com/a.png');

  // One pane at a time: the list, then the conversation with a way back.
  await page.getByLabel('Find people').fill('bob');
  await page.locator('#people-results').getByRole('button', { name: 'bob' }).click();
  await send(page, 'from my phone');
  await message(page, 'from my phone').waitFor();
  assert.equal(await page.locator('#sidebar').isVisible(), false);
  await screenshot(page, 'phone-conversation');
  await page.getByRole('button', { name: 'Back to conversations' }).click();
  await conversationButton(page, 'bob').waitFor();
  await screenshot(page, 'phone-list');

  await page.getByRole('button', { name: 'Log out' }).click();
  await page.locator('#login-form').waitFor();
  await page.reload();
  await page.locator('#login-form').waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('mmchat.session')), null);
  // The old password no longer works.
  const old = await api(server, 'POST', '/api/login', null, { username: 'alice2', password: 'password-alice' });
  assert.equal(old.status, 401);
  assertNoPageProblems();
});

/** Presses Tab until the focused element matches selector (at most 40 times). */
async function tabTo(page, selector) {
  for (let i = 0; i < 40; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s), selector)) return;
    await page.keyboard.press('Tab');
  }
  throw new Error(`Tab never reached ${selector}`);
}

/** The controls on screen that a screen reader could not name. */
function unlabelledControls(page) {
  return page.evaluate(() => [...document.querySelectorAll('button, input, textarea, select')]
    .filter((c) => c.checkVisibility() && c.type !== 'hidden')
    .filter((c) => !(c.labels?.length || c.getAttribute('aria-label') || (c.tagName === 'BUTTON' && c.textContent.trim())))
    .map((c) => c.outerHTML));
}

test('from the keyboard alone, with every control labelled', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { alice: a, bob: b } = await accounts('alice', 'bob');
  await api(server, 'POST', '/api/conversations/private', a.token, { user_id: b.user.id });
  const { page } = await person();
  assert.deepEqual(await unlabelledControls(page), []);
  await tabTo(page, '#login-form [name=login]');
  await page.keyboard.type('alice');
  await page.keyboard.press('Tab');
  await page.keyboard.type('password-alice');
  await page.keyboard.press('Enter');
  await waitForConnected(page);

  await tabTo(page, '#conversation-list .conversation-item');
  await page.keyboard.press('Enter');
  await page.locator('#conversation-title', { hasText: 'bob' }).waitFor();
  await page.waitForFunction(() => document.activeElement?.id === 'composer-input'); // ready to type
  await page.keyboard.type('typed, not clicked');
  await page.keyboard.press('Enter');
  await message(page, 'typed, not clicked').waitFor();
  assert.deepEqual(await unlabelledControls(page), []);

  // A message's actions are reachable too: Tab into them, and reply.
  await tabTo(page, '#messages li.message .actions button');
  await page.keyboard.press('Enter');
  await page.locator('#mode-text', { hasText: 'Replying to You: typed, not clicked' }).waitFor();
  await page.keyboard.press('Escape');
  await page.locator('#mode-bar').waitFor({ state: 'hidden' });
  assertNoPageProblems();
});
