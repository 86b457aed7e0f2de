// The MmChat web client. All the API work is in mmchat.js; this file keeps the state the
// screen shows and draws it. Everything a user wrote (names, messages, file names) is put on
// the page as text (textContent, attribute values), never as HTML.
//
// The token is kept in localStorage: a reload or a second tab keeps the session, and the
// WebSocket and downloads need the token itself (they cannot use an HttpOnly cookie: the API
// takes no cookies, by design, so no other site can act in the user's name). What guards it is
// that no script but this page's can run here: a strict Content-Security-Policy and no HTML
// made from user content. Logging out, or the server refusing the token, forgets it.

import {ApiError, MmChatClient} from './mmchat.js';

const $ = (id) => document.getElementById(id);
const SESSION_KEY = 'mmchat.session';
const QUICK_EMOJI = ['👍', '❤️', '😂', '🎉'];
const INLINE_IMAGES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);
const STATUS_RANK = {sent: 0, delivered: 1, read: 2};

const chat = new MmChatClient({storage: localStorage});

const state = {
  /** @type {?import('./mmchat.js').User} */
  me: null,
  /** @type {Map<number, import('./mmchat.js').Conversation>} in list order */
  conversations: new Map(),
  /** conversation id -> {messages: Map<id, Message>, hasMore, loading} */
  histories: new Map(),
  /** conversation id -> Map<user id, {read, delivered}> markers learnt from receipts */
  markers: new Map(),
  /** user id -> {online, last_seen} */
  presence: new Map(),
  /** user id -> username (participants, and whoever else we met) */
  names: new Map(),
  /** conversation id -> Map<user id, timer> */
  typing: new Map(),
  openId: null,
  /** {kind: 'reply'|'edit', message} */
  mode: null,
};

// ---------------------------------------------------------------- helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? '' : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** A form's input by name (form.name would be the form's own name attribute). */
function field(form, name) {
  return form.querySelector(`[name="${name}"]`);
}

function showError(target, error) {
  target.textContent = error instanceof ApiError || error instanceof Error ? error.message : String(error);
}

function timeText(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'}) : d.toLocaleString([], {dateStyle: 'short', timeStyle: 'short'});
}

function nameOf(userId) {
  if (state.me && userId === state.me.id) return 'You';
  return state.names.get(userId) ?? `user ${userId}`;
}

function otherParticipant(conv) {
  return conv.participants.find((p) => p.user_id !== state.me.id);
}

function titleOf(conv) {
  if (conv.type === 'group') return conv.name;
  return otherParticipant(conv)?.username ?? 'Just you';
}

function myRole(conv) {
  return conv.participants.find((p) => p.user_id === state.me.id)?.role;
}

function history(convId) {
  let h = state.histories.get(convId);
  if (!h) {
    h = {messages: new Map(), hasMore: true, loading: false, loaded: false};
    state.histories.set(convId, h);
  }
  return h;
}

// ---------------------------------------------------------------- sign in and out

function showAuthForm(id) {
  for (const form of document.querySelectorAll('.auth-form')) form.hidden = form.id !== id;
  for (const tab of document.querySelectorAll('.tabs button')) tab.setAttribute('aria-pressed', String(tab.dataset.form === id));
  $('auth-message').textContent = '';
  $(id).querySelector('input')?.focus();
}

for (const tab of document.querySelectorAll('.tabs button')) tab.addEventListener('click', () => showAuthForm(tab.dataset.form));

function formHandler(form, handler) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await handler(Object.fromEntries(new FormData(form)));
    } catch (e) {
      showError(form.closest('dialog')?.querySelector('.form-error') ?? $('auth-message'), e);
    } finally {
      button.disabled = false;
    }
  });
}

formHandler($('login-form'), async ({login, password}) => {
  const answer = await chat.login({login, password});
  startSession(answer.token, answer.user);
});

let pendingEmail = '';
formHandler($('signup-form'), async ({username, email, password}) => {
  await chat.signupInitiate({username, email, password});
  pendingEmail = email;
  $('verify-email').textContent = email;
  showAuthForm('verify-form');
});
formHandler($('verify-form'), async ({otp}) => {
  const answer = await chat.signupVerify({email: pendingEmail, otp: otp.trim()});
  startSession(answer.token, answer.user);
});
formHandler($('forgot-form'), async ({email}) => {
  await chat.forgotInitiate(email);
  pendingEmail = email;
  $('reset-email').textContent = email;
  showAuthForm('reset-form');
});
formHandler($('reset-form'), async ({otp, password}) => {
  await chat.forgotReset({email: pendingEmail, otp: otp.trim(), newPassword: password});
  showAuthForm('login-form');
  $('auth-message').textContent = 'Your password is set. Log in with it.';
});

function startSession(token, user) {
  localStorage.setItem(SESSION_KEY, JSON.stringify({token, user_id: user.id}));
  chat.token = token;
  state.me = user;
  $('auth').hidden = true;
  $('chat').hidden = false;
  $('profile-button').hidden = $('logout-button').hidden = false;
  $('me-name').textContent = user.username;
  chat.connect();
  loadEverything().then(() => chat.caughtUp(), () => {});
}

function endSession(message) {
  chat.logout();
  localStorage.removeItem(SESSION_KEY);
  location.hash = '';
  Object.assign(state, {me: null, openId: null, mode: null});
  for (const key of ['conversations', 'histories', 'markers', 'presence', 'names', 'typing']) state[key].clear();
  $('chat').hidden = true;
  $('auth').hidden = false;
  $('profile-button').hidden = $('logout-button').hidden = true;
  $('me-name').textContent = '';
  $('connection').textContent = '';
  showAuthForm('login-form');
  if (message) $('auth-message').textContent = message;
}

$('logout-button').addEventListener('click', () => endSession());
chat.addEventListener('unauthorized', () => endSession('Your session ended. Log in again.'));

// ---------------------------------------------------------------- loading

async function loadEverything() {
  const [me, conversations] = await Promise.all([chat.me(), chat.conversations()]);
  state.me = me;
  $('me-name').textContent = me.username;
  state.conversations.clear();
  for (const c of conversations) rememberConversation(c);
  renderList();
  await loadPresence();
  const wanted = Number(location.hash.slice(1)) || state.openId;
  if (wanted && state.conversations.has(wanted)) await openConversation(wanted, {reload: true});
  else if (state.openId) closeConversation('That conversation is no longer yours.');
}

function rememberConversation(conv) {
  for (const p of conv.participants) state.names.set(p.user_id, p.username);
  state.conversations.set(conv.id, conv);
}

/** Who is online: the other side of each private conversation. */
async function loadPresence() {
  const ids = new Set();
  for (const c of state.conversations.values()) {
    if (c.type === 'private') {
      const other = otherParticipant(c);
      if (other) ids.add(other.user_id);
    }
  }
  await Promise.all([...ids].map(async (id) => {
    try {
      const u = await chat.user(id);
      state.presence.set(id, {online: u.online, last_seen: u.last_seen});
    } catch { /* shown as unknown */ }
  }));
  renderList();
  renderHeader();
}

// ---------------------------------------------------------------- the conversation list

function lastMessageText(m) {
  if (!m) return 'No messages yet';
  if (m.deleted_at) return `${nameOf(m.sender_id)}: message deleted`;
  const text = m.content || (m.attachments.length ? `📎 ${m.attachments.map((a) => a.filename ?? 'file').join(', ')}` : '');
  return `${nameOf(m.sender_id)}: ${text}`;
}

function renderList() {
  const items = [...state.conversations.values()].map((c) => {
    const title = titleOf(c);
    let dot = null;
    if (c.type === 'private') {
      const online = state.presence.get(otherParticipant(c)?.user_id)?.online;
      dot = el('span', {class: `dot ${online ? 'online' : ''}`, role: 'img', 'aria-label': online ? 'online' : 'offline'});
    }
    const badge = c.unread_count > 0 ? el('span', {class: 'badge', 'aria-label': `${c.unread_count} unread`, text: String(c.unread_count)}) : null;
    const button = el('button', {type: 'button', class: 'conversation-item', 'aria-current': c.id === state.openId ? 'true' : null,
      dataset: {id: String(c.id)}, onclick: () => openConversation(c.id)},
    el('span', {class: 'row'}, dot, el('span', {class: 'name', text: title}), badge),
    el('span', {class: 'preview', text: lastMessageText(c.last_message)}));
    return el('li', {}, button);
  });
  $('conversation-list').replaceChildren(...items);
}

/** Moves a conversation to the top (newest activity first). */
function bump(conv) {
  state.conversations.delete(conv.id);
  state.conversations = new Map([[conv.id, conv], ...state.conversations]);
}

// Finding people and starting a private conversation.
let searchTimer = null;
$('people-search').addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(searchPeople, 250);
});
$('people-form').addEventListener('submit', (e) => {
  e.preventDefault();
  searchPeople();
});

async function searchPeople() {
  const q = $('people-search').value.trim();
  if (!q) return $('people-results').replaceChildren();
  try {
    const users = (await chat.searchUsers(q, 10)).filter((u) => u.id !== state.me.id);
    const items = users.map((u) => el('li', {}, el('button', {type: 'button', class: 'person', onclick: () => startPrivate(u)},
        el('span', {class: `dot ${u.online ? 'online' : ''}`, role: 'img', 'aria-label': u.online ? 'online' : 'offline'}),
        el('span', {text: u.username}))));
    $('people-results').replaceChildren(...(items.length ? items : [el('li', {class: 'muted', text: 'Nobody by that name'})]));
  } catch (e) {
    $('people-results').replaceChildren(el('li', {class: 'error', text: e.message}));
  }
}

async function startPrivate(user) {
  state.presence.set(user.id, {online: user.online, last_seen: user.last_seen});
  let conv;
  try {
    conv = await chat.createPrivate(user.id);
  } catch (e) {
    return $('people-results').replaceChildren(el('li', {class: 'error', text: e.message}));
  }
  rememberConversation(conv);
  if (!state.conversations.has(conv.id)) bump(conv);
  $('people-search').value = '';
  $('people-results').replaceChildren();
  renderList();
  openConversation(conv.id);
}

// ---------------------------------------------------------------- one conversation

async function openConversation(id, {reload = false} = {}) {
  const switching = state.openId !== id;
  if (switching) {
    if (state.openId) chat.typing(state.openId, false);
    setMode(null);
    closeSearch();
  }
  state.openId = id;
  if (location.hash !== `#${id}`) setLocationHash(id);
  $('chat').classList.add('viewing');
  $('conversation-empty').hidden = true;
  $('conversation-view').hidden = false;
  renderList();
  renderHeader();
  if (switching) $('composer-input').focus();  // the list's button it came from was just redrawn
  const h = history(id);
  if (!h.loaded || reload) {
    h.messages.clear();
    h.hasMore = true;
    try {
      await loadOlder(id, {fresh: true});
    } catch (e) {
      // Not loaded: opening it again tries again.
      return $('messages').replaceChildren(el('li', {class: 'error', text: `Messages could not be loaded: ${e.message}`}));
    }
  }
  renderMessages({toBottom: true});
  markRead();
}

function setLocationHash(id) {
  window.history.replaceState(null, '', id ? `#${id}` : location.pathname);
}

function closeConversation(notice) {
  state.openId = null;
  setLocationHash(null);
  $('chat').classList.remove('viewing');
  $('conversation-view').hidden = true;
  $('conversation-empty').hidden = false;
  $('conversation-empty').textContent = notice ?? 'Pick a conversation, or find someone to talk to.';
  renderList();
}

$('back-button').addEventListener('click', () => closeConversation());

async function loadOlder(convId, {fresh = false} = {}) {
  const h = history(convId);
  if (h.loading || (!h.hasMore && !fresh)) return;
  h.loading = true;
  try {
    const oldest = fresh ? undefined : Math.min(...h.messages.keys());
    const page = await chat.history(convId, {before: oldest, limit: 50});
    for (const m of page.messages) upsert(m, {quiet: true});
    h.hasMore = page.has_more;
    h.loaded = true;
  } finally {
    h.loading = false;
  }
}

$('messages').addEventListener('scroll', () => {
  if ($('messages').scrollTop <= 40) showOlder();
});

async function showOlder() {
  const list = $('messages');
  const id = state.openId;
  if (!id || !history(id).hasMore || history(id).loading) return;
  const before = list.scrollHeight;
  await loadOlder(id);
  if (id !== state.openId) return;
  renderMessages();
  list.scrollTop = list.scrollHeight - before;  // keep the reader where they were
}

function renderHeader() {
  const conv = state.conversations.get(state.openId);
  if (!conv) return;
  $('conversation-title').textContent = titleOf(conv);
  let subtitle;
  if (conv.type === 'group') {
    subtitle = `${conv.participants.length} members`;
  } else {
    const p = state.presence.get(otherParticipant(conv)?.user_id);
    subtitle = !p ? '' : p.online ? 'online' : p.last_seen ? `last seen ${timeText(p.last_seen)}` : 'offline';
  }
  $('conversation-subtitle').textContent = subtitle;
  $('details-button').hidden = conv.type !== 'group';
  renderTyping();
}

/** The status of one of my messages: the server's, raised by the receipts heard since. */
function statusOf(m, conv) {
  let best = STATUS_RANK[m.status] ?? 0;
  const markers = state.markers.get(conv.id);
  const others = conv.participants.filter((p) => p.user_id !== state.me.id);
  if (markers && others.length) {
    const marks = others.map((p) => markers.get(p.user_id) ?? {read: 0, delivered: 0});
    if (marks.every((k) => k.read >= m.id)) best = Math.max(best, 2);
    else if (marks.every((k) => Math.max(k.read, k.delivered) >= m.id)) best = Math.max(best, 1);
  }
  return ['sent', 'delivered', 'read'][best];
}

const TICKS = {sent: '✓', delivered: '✓✓', read: '✓✓'};

function renderMessage(m, conv) {
  const mine = m.sender_id === state.me.id;
  const body = [];
  if (m.reply_to) {
    const quoted = history(conv.id).messages.get(m.reply_to);
    const text = !quoted ? 'an earlier message' : quoted.deleted_at ? 'a deleted message' : `${nameOf(quoted.sender_id)}: ${quoted.content.slice(0, 80)}`;
    body.push(el('blockquote', {class: 'quote', text: `↩ ${text}`}));
  }
  if (m.deleted_at) {
    body.push(el('p', {class: 'text deleted', text: 'This message was deleted.'}));
  } else {
    if (m.content) body.push(el('p', {class: 'text', text: m.content}));
    for (const a of m.attachments) body.push(renderAttachment(a));
  }
  const reactions = m.reactions.map((r) => {
    const mineToo = r.user_ids.includes(state.me.id);
    return el('button', {type: 'button', class: 'reaction', 'aria-pressed': String(mineToo),
      'aria-label': `${r.emoji} ${r.count}, ${mineToo ? 'remove yours' : 'add yours'}`,
      onclick: () => act(() => (mineToo ? chat.unreact(m.id, r.emoji) : chat.react(m.id, r.emoji)))}, `${r.emoji} ${r.count}`);
  });
  const status = mine ? statusOf(m, conv) : null;
  const meta = el('p', {class: 'meta'},
      el('span', {class: 'sender', text: nameOf(m.sender_id)}),
      el('time', {datetime: m.created_at, text: timeText(m.created_at)}),
      m.edited_at && !m.deleted_at ? el('span', {class: 'edited', text: 'edited'}) : null,
      status ? el('span', {class: `ticks ${status}`, role: 'img', 'aria-label': status, title: status, text: TICKS[status]}) : null);
  const actions = m.deleted_at ? null : el('div', {class: 'actions'},
      el('button', {type: 'button', onclick: () => setMode({kind: 'reply', message: m})}, 'Reply'),
      ...QUICK_EMOJI.map((e) => el('button', {type: 'button', 'aria-label': `React ${e}`, onclick: () => act(() => chat.react(m.id, e))}, e)),
      mine ? el('button', {type: 'button', onclick: () => setMode({kind: 'edit', message: m})}, 'Edit') : null,
      mine || (conv.type === 'group' && myRole(conv) === 'admin') ?
        el('button', {type: 'button', onclick: () => confirm('Delete this message for everyone?') && act(() => chat.deleteMessage(m.id))}, 'Delete') : null);
  return el('li', {class: `message ${mine ? 'mine' : 'theirs'}`, dataset: {id: String(m.id)}},
      meta, ...body, reactions.length ? el('div', {class: 'reactions'}, ...reactions) : null, actions);
}

function renderAttachment(a) {
  const url = chat.attachmentUrl(a);
  const label = a.filename ?? 'file';
  const size = a.size < 1024 ? `${a.size} B` : a.size < 1048576 ? `${(a.size / 1024).toFixed(0)} KiB` : `${(a.size / 1048576).toFixed(1)} MiB`;
  const type = a.content_type.split(';')[0].trim().toLowerCase();
  const link = el('a', {href: url, download: label, class: 'attachment'}, `📎 ${label} (${size})`);
  if (!INLINE_IMAGES.has(type)) return link;
  return el('figure', {class: 'image'}, el('img', {src: url, alt: label, loading: 'lazy'}), el('figcaption', {}, link));
}

function renderPending(item) {
  const waiting = chat.state === 'open' ? 'sending…' : 'waiting for the connection…';
  return el('li', {class: 'message mine pending', dataset: {clientId: item.client_id}},
      el('p', {class: 'meta'}, el('span', {class: 'sender', text: 'You'}), el('span', {class: 'ticks', text: waiting})),
      el('p', {class: 'text', text: item.content}));
}

function renderMessages({toBottom = false} = {}) {
  const conv = state.conversations.get(state.openId);
  if (!conv) return;
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  const h = history(conv.id);
  const ids = [...h.messages.keys()].sort((a, b) => a - b);
  const stored = new Set(ids.map((id) => h.messages.get(id).client_id).filter(Boolean));
  const items = ids.map((id) => renderMessage(h.messages.get(id), conv));
  if (h.hasMore) {
    items.unshift(el('li', {class: 'older'}, el('button', {type: 'button', onclick: showOlder}, 'Load older messages')));
  }
  for (const item of chat.outbox) {
    if (item.conversation_id === conv.id && !stored.has(item.client_id)) items.push(renderPending(item));
  }
  list.replaceChildren(...items);
  if (toBottom || atBottom) list.scrollTop = list.scrollHeight;
}

async function act(action) {
  try {
    const result = await action();
    if (result?.id) upsert(result);
  } catch (e) {
    alert(e.message);
  }
}

/** Puts a message (new, changed, or fetched again) in its place; each id shows once. */
function upsert(m, {quiet = false} = {}) {
  const h = history(m.conversation_id);
  const old = h.messages.get(m.id);
  if (old && old.change_id > m.change_id) return;
  if (old && old.change_id === m.change_id && STATUS_RANK[old.status] >= STATUS_RANK[m.status]) return;
  h.messages.set(m.id, m);
  if (m.sender_id !== state.me?.id) state.names.has(m.sender_id) || lookUpName(m.sender_id);
  const conv = state.conversations.get(m.conversation_id);
  if (!conv || quiet) return;
  const isNew = !old && (!conv.last_message || m.id > conv.last_message.id);
  if (!conv.last_message || m.id >= conv.last_message.id) conv.last_message = m;
  if (isNew) {
    if (m.sender_id !== state.me.id && !m.deleted_at && !(state.openId === m.conversation_id && document.visibilityState === 'visible')) conv.unread_count += 1;
    bump(conv);
    stopTyping(conv.id, m.sender_id);
  }
  renderList();
  if (state.openId === m.conversation_id) {
    renderMessages();
    markRead();
  }
}

async function lookUpName(userId) {
  state.names.set(userId, `user ${userId}`);
  try {
    state.names.set(userId, (await chat.user(userId)).username);
    if (state.openId) renderMessages();
  } catch { /* stays "user N" */ }
}

/** Moves my read marker to the newest message of the open conversation. */
function markRead() {
  const conv = state.conversations.get(state.openId);
  if (!conv || document.visibilityState !== 'visible') return;
  const ids = [...history(conv.id).messages.keys()];
  if (!ids.length) return;
  const newest = Math.max(...ids);
  if ((conv.last_read_message_id ?? 0) >= newest) {
    conv.unread_count = 0;
    return renderList();
  }
  conv.last_read_message_id = newest;
  conv.unread_count = 0;
  renderList();
  chat.markRead(conv.id, newest).catch(() => { conv.last_read_message_id = null; });
}
document.addEventListener('visibilitychange', markRead);
window.addEventListener('focus', markRead);

// ---------------------------------------------------------------- writing

function setMode(mode) {
  state.mode = mode;
  $('mode-bar').hidden = !mode;
  if (!mode) return;
  const m = mode.message;
  if (mode.kind === 'edit') {
    $('mode-text').textContent = 'Editing your message';
    $('composer-input').value = m.content;
  } else {
    $('mode-text').textContent = `Replying to ${nameOf(m.sender_id)}: ${m.content.slice(0, 80)}`;
  }
  $('composer-input').focus();
}
$('mode-cancel').addEventListener('click', () => {
  if (state.mode?.kind === 'edit') $('composer-input').value = '';
  setMode(null);
});

$('composer-files').addEventListener('change', () => {
  $('composer-file-names').textContent = [...$('composer-files').files].map((f) => f.name).join(', ');
});

$('composer').addEventListener('submit', async (event) => {
  event.preventDefault();
  const conv = state.conversations.get(state.openId);
  const input = $('composer-input');
  const content = input.value;
  const files = [...$('composer-files').files];
  if (!conv || (!content.trim() && !files.length)) return;
  const mode = state.mode;
  input.value = '';
  setMode(null);
  typingSent = 0;
  chat.typing(conv.id, false);
  try {
    if (mode?.kind === 'edit') {
      upsert(await chat.edit(mode.message.id, content));
      return;
    }
    let attachments = [];
    if (files.length) {
      $('composer-file-names').textContent = 'uploading…';
      attachments = (await Promise.all(files.map((f) => chat.upload(f)))).map((a) => a.id);
      $('composer-files').value = '';
      $('composer-file-names').textContent = '';
    }
    const sending = chat.send({conversationId: conv.id, content, replyTo: mode?.kind === 'reply' ? mode.message.id : null, attachments});
    renderMessages({toBottom: true});
    upsert(await sending);  // shown in id order, whether its event or this answer comes first
  } catch (e) {
    $('composer-file-names').textContent = '';
    alert(`Not sent: ${e.message}`);
    renderMessages();
  }
});

$('composer-input').addEventListener('keydown', (event) => {
  // Enter sends, Shift+Enter starts a new line.
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $('composer').requestSubmit();
  } else if (event.key === 'Escape' && state.mode) {
    $('mode-cancel').click();
  }
});

// Typing: a start at most every 3 s while keys come, a stop after 4 s without one.
let typingSent = 0;
let typingIdle = null;
$('composer-input').addEventListener('input', () => {
  const id = state.openId;
  if (!id) return;
  if (Date.now() - typingSent > 3000) {
    chat.typing(id, true);
    typingSent = Date.now();
  }
  clearTimeout(typingIdle);
  typingIdle = setTimeout(() => {
    chat.typing(id, false);
    typingSent = 0;
  }, 4000);
});

function renderTyping() {
  const users = [...(state.typing.get(state.openId)?.keys() ?? [])].map(nameOf);
  $('typing').textContent = !users.length ? '' : `${users.join(', ')} ${users.length === 1 ? 'is' : 'are'} typing…`;
}

function stopTyping(convId, userId) {
  const map = state.typing.get(convId);
  if (!map?.has(userId)) return;
  clearTimeout(map.get(userId));
  map.delete(userId);
  renderTyping();
}

// ---------------------------------------------------------------- search

$('search-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const q = $('message-search').value.trim();
  if (!q || !state.openId) return;
  const panel = $('search-panel');
  panel.hidden = false;
  try {
    const {messages} = await chat.search(q, {conversationId: state.openId, limit: 50});
    const items = messages.map((m) => el('li', {},
        el('p', {class: 'meta'}, el('span', {class: 'sender', text: nameOf(m.sender_id)}), el('time', {datetime: m.created_at, text: timeText(m.created_at)})),
        el('p', {class: 'text', text: m.content})));
    $('search-results').replaceChildren(...(items.length ? items : [el('li', {class: 'muted', text: 'No message matches.'})]));
  } catch (e) {
    $('search-results').replaceChildren(el('li', {class: 'error', text: e.message}));
  }
});
function closeSearch() {
  $('search-panel').hidden = true;
  $('search-results').replaceChildren();
  $('message-search').value = '';
}
$('search-close').addEventListener('click', closeSearch);

// ---------------------------------------------------------------- dialogs

for (const button of document.querySelectorAll('.close-dialog')) {
  button.addEventListener('click', () => button.closest('dialog').close());
}

function openDialog(id) {
  const dialog = $(id);
  dialog.querySelector('.form-error').textContent = '';
  dialog.showModal();
  return dialog;
}

$('profile-button').addEventListener('click', () => {
  const form = $('profile-form');
  field(form, 'username').value = state.me.username;
  field(form, 'profile_picture').value = state.me.profile_picture ?? '';
  openDialog('profile-dialog');
});
formHandler($('profile-form'), async ({username, profile_picture: picture}) => {
  state.me = await chat.updateMe({username, profile_picture: picture.trim() || null});
  $('me-name').textContent = state.me.username;
  $('profile-dialog').close();
});

/** Usernames typed by a person to user ids; a name that matches nobody is an error. */
async function resolveUsernames(text) {
  const names = text.split(',').map((s) => s.trim()).filter(Boolean);
  return Promise.all(names.map(async (name) => {
    const found = (await chat.searchUsers(name, 100)).find((u) => u.username.toLowerCase() === name.toLowerCase());
    if (!found) throw new Error(`Nobody is called ${name}.`);
    return found.id;
  }));
}

$('new-group-button').addEventListener('click', () => {
  $('group-form').reset();
  openDialog('group-dialog');
});
formHandler($('group-form'), async ({name, members}) => {
  const conv = await chat.createGroup(name, await resolveUsernames(members));
  rememberConversation(conv);
  bump(conv);
  $('group-dialog').close();
  openConversation(conv.id);
});

$('details-button').addEventListener('click', () => {
  renderDetails();
  openDialog('details-dialog');
});

function renderDetails() {
  const conv = state.conversations.get(state.openId);
  if (!conv) return $('details-dialog').close();
  const admin = myRole(conv) === 'admin';
  $('details-title').textContent = titleOf(conv);
  const rename = $('rename-form');
  field(rename, 'name').value = conv.name ?? '';
  rename.hidden = !admin;
  $('add-member-form').hidden = !admin;
  $('member-list').replaceChildren(...conv.participants.map((p) => {
    const me = p.user_id === state.me.id;
    const controls = admin && !me ? [
      el('button', {type: 'button', onclick: () => changeMembers(() => chat.setRole(conv.id, p.user_id, p.role === 'admin' ? 'member' : 'admin'))},
          p.role === 'admin' ? `Make ${p.username} a member` : `Make ${p.username} an admin`),
      el('button', {type: 'button', onclick: () => changeMembers(() => chat.removeParticipant(conv.id, p.user_id))}, `Remove ${p.username}`),
    ] : [];
    return el('li', {}, el('span', {text: `${p.username}${me ? ' (you)' : ''}`}), el('span', {class: 'role', text: p.role}), ...controls);
  }));
}

async function changeMembers(action) {
  try {
    const conv = await action();
    if (conv?.id) {
      rememberConversation(conv);
      renderHeader();
      renderDetails();
    }
    $('details-dialog').querySelector('.form-error').textContent = '';
  } catch (e) {
    showError($('details-dialog').querySelector('.form-error'), e);
  }
}

$('rename-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = state.openId;
  changeMembers(() => chat.rename(id, field($('rename-form'), 'name').value));
});
$('add-member-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = state.openId;
  const input = field($('add-member-form'), 'username');
  changeMembers(async () => {
    const [userId] = await resolveUsernames(input.value);
    if (userId === undefined) return null;
    const conv = await chat.addParticipant(id, userId);
    input.value = '';
    return conv;
  });
});
$('leave-button').addEventListener('click', async () => {
  const id = state.openId;
  if (!confirm('Leave this conversation?')) return;
  try {
    await chat.removeParticipant(id, state.me.id);
    $('details-dialog').close();
    forgetConversation(id, 'You left the conversation.');
  } catch (e) {
    showError($('details-dialog').querySelector('.form-error'), e);
  }
});

function forgetConversation(id, notice) {
  state.conversations.delete(id);
  state.histories.delete(id);
  if (state.openId === id) {
    if ($('details-dialog').open) $('details-dialog').close();
    closeConversation(notice);
  }
  renderList();
}

// ---------------------------------------------------------------- live events

chat.addEventListener('message', (e) => upsert(e.detail));
chat.addEventListener('message_updated', (e) => upsert(e.detail));
chat.addEventListener('synced', (e) => {
  if (!state.conversations.has(e.detail.conversation_id)) return;  // loadEverything() picks it up
  upsert(e.detail);
});
chat.addEventListener('outbox', () => renderMessages());

chat.addEventListener('conversation', (e) => {
  const conv = e.detail;
  const known = state.conversations.has(conv.id);
  rememberConversation(conv);
  if (!known) {
    bump(conv);
    loadPresence();
  } else {
    bump(conv);
  }
  renderList();
  if (state.openId === conv.id) {
    renderHeader();
    renderMessages();
    if ($('details-dialog').open) renderDetails();
  }
});
chat.addEventListener('conversation_removed', (e) => {
  const conv = state.conversations.get(e.detail.conversation_id);
  if (conv) forgetConversation(conv.id, `You are no longer in ${titleOf(conv)}.`);
});

function receipt(kind, r) {
  let markers = state.markers.get(r.conversation_id);
  if (!markers) state.markers.set(r.conversation_id, markers = new Map());
  const mark = markers.get(r.user_id) ?? {read: 0, delivered: 0};
  mark[kind] = Math.max(mark[kind], r.message_id);
  markers.set(r.user_id, mark);
  if (state.openId === r.conversation_id) renderMessages();
}
chat.addEventListener('read_receipt', (e) => receipt('read', e.detail));
chat.addEventListener('delivery_receipt', (e) => receipt('delivered', e.detail));

chat.addEventListener('typing_start', (e) => {
  const {conversation_id: convId, user_id: userId} = e.detail;
  let map = state.typing.get(convId);
  if (!map) state.typing.set(convId, map = new Map());
  clearTimeout(map.get(userId));
  // If the stop is lost (a network cut), the indicator still goes.
  map.set(userId, setTimeout(() => stopTyping(convId, userId), 12000));
  if (state.openId === convId) renderTyping();
});
chat.addEventListener('typing_stop', (e) => stopTyping(e.detail.conversation_id, e.detail.user_id));

chat.addEventListener('presence', (e) => {
  const {user_id: userId, online, last_seen: lastSeen} = e.detail;
  state.presence.set(userId, {online, last_seen: lastSeen});
  if (!online) for (const convId of state.typing.keys()) stopTyping(convId, userId);
  renderList();
  renderHeader();
});

const CONNECTION_TEXT = {open: 'Connected', connecting: 'Connecting…', offline: 'Offline: reconnecting'};
chat.addEventListener('status', (e) => {
  if (!state.me) return;
  $('connection').textContent = CONNECTION_TEXT[e.detail.state] ?? '';
  $('connection').dataset.state = e.detail.state;
  if (e.detail.reconnected) loadEverything().catch(() => {});  // names, members and unread counts may have changed
  if (state.openId) renderMessages();
});

// ---------------------------------------------------------------- start

window.addEventListener('hashchange', () => {
  const id = Number(location.hash.slice(1));
  if (id && id !== state.openId && state.conversations.has(id)) openConversation(id);
});

/** Back from a reload: the saved token still holds (then carry on) or not (log in again). */
async function resume() {
  $('auth').hidden = true;
  for (;;) {
    try {
      return startSession(saved.token, await chat.me());
    } catch (e) {
      if (e.status === 401) return endSession('Your session ended. Log in again.');
      $('connection').textContent = 'The server cannot be reached: trying again…';
      await new Promise((resolve) => setTimeout(resolve, 2000 + Math.random() * 3000));
    }
  }
}

const saved = (() => {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY) ?? 'null');
  } catch {
    return null;
  }
})();
if (saved?.token) {
  chat.token = saved.token;
  resume();
} else {
  showAuthForm('login-form');
}
