// MmChat client library: the REST API, the WebSocket with reconnection, `sync` catch-up and
// exactly-once sends by `client_id`. One ES module, no dependencies; the web client at / is
// built on it, and any page or app can import it (from /web/mmchat.js or a copy).
//
//   import {MmChatClient} from '/web/mmchat.js';
//   const chat = new MmChatClient({baseUrl: ''});
//   await chat.login({login: 'alice', password: 'secret123'});
//   chat.addEventListener('message', (e) => console.log(e.detail));
//   chat.connect();
//   await chat.send({conversationId: 7, content: 'hello'});
//
// Events (CustomEvent, payload in `detail`): every server frame by its type (`message`,
// `message_updated`, `read_receipt`, `delivery_receipt`, `typing_start`, `typing_stop`,
// `presence`, `conversation`, `conversation_removed`), plus `synced` (a Message fetched by the
// catch-up after a reconnection: upsert it like `message_updated`), `status` ({state:
// 'connecting'|'open'|'offline'}, {reconnected: true} when a catch-up finished), `outbox`
// (the unsent messages changed) and `unauthorized` (the token is no longer valid: log in again).

/**
 * @typedef {{id: number, username: string, email?: string, profile_picture: ?string,
 *   created_at: string, online: boolean, last_seen: ?string}} User
 * @typedef {{id: string, filename: ?string, content_type: string, size: number,
 *   created_at: string, url: string}} Attachment
 * @typedef {{emoji: string, count: number, user_ids: number[]}} Reaction
 * @typedef {{id: number, conversation_id: number, seq: number, sender_id: number,
 *   content: string, client_id: ?string, created_at: string,
 *   status: 'sent'|'delivered'|'read', reply_to: ?number, attachments: Attachment[],
 *   reactions: Reaction[], edited_at: ?string, deleted_at: ?string, change_id: number}} Message
 * @typedef {{user_id: number, username: string, profile_picture: ?string,
 *   role: 'admin'|'member', joined_at: string}} Participant
 * @typedef {{id: number, type: 'private'|'group', name: ?string, created_by: number,
 *   created_at: string, participants: Participant[], last_message: ?Message,
 *   unread_count: number, last_read_message_id: ?number}} Conversation
 * @typedef {{client_id: string, conversation_id: number, content: string,
 *   reply_to: ?number, attachments: string[], queued_at: string}} OutgoingMessage
 */

/** An error answer of the API (`{"error": {"code", "message"}}`), or a network failure. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 for a network failure
   * @param {string} code the API's error code (`network` when the server was not reached)
   * @param {string} message
   * @param {number} [retryAfter] seconds, for `rate_limited`
   */
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// Errors after which sending the same message again cannot succeed.
const FINAL_SEND_ERRORS = new Set(['invalid_request', 'forbidden', 'not_found', 'payload_too_large']);

/** A random id for `client_id`: 128 bits, base64url. */
export function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export class MmChatClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] the server, e.g. `https://chat.example.com`; '' for this page's origin
   * @param {string} [options.token] a token from an earlier login
   * @param {Storage} [options.storage] where unsent messages are kept across reloads (default
   *   none: they live as long as the object)
   * @param {number} [options.pingEverySec] how often a quiet connection is checked (20)
   * @param {number} [options.maxBackoffSec] the longest wait between reconnection attempts (30)
   */
  constructor({baseUrl = '', token = null, storage = null, pingEverySec = 20, maxBackoffSec = 30} = {}) {
    super();
    this.baseUrl = baseUrl.replace(/\/$/, '');
    /** @type {?string} */
    this.token = token;
    this.storage = storage;
    this.pingEveryMs = pingEverySec * 1000;
    this.maxBackoffMs = maxBackoffSec * 1000;
    /** @type {?WebSocket} */
    this.ws = null;
    this.state = 'offline';
    this.wanted = false;  // connect() called and not disconnect()
    this.attempt = 0;
    this.timers = {};
    this.refs = new Map();  // ref -> {resolve, reject}
    this.nextRef = 1;
    // The catch-up position: the highest change_id seen, and a checkpoint that trails it by
    // a few seconds. Events of different conversations may reach a connection slightly out of
    // change_id order, so a reconnection syncs from the checkpoint, not from the highest
    // (what comes twice is upserted by id, so nothing shows twice).
    this.seen = 0;
    this.checkpoint = 0;
    this.trailing = 0;
    this.everOpened = false;
    /** @type {OutgoingMessage[]} */
    this.outbox = this.loadOutbox();
    this.inFlight = new Set();  // client_ids sent on the current connection
    this.waiters = new Map();  // client_id -> [{resolve, reject}]
    this.onOnline = () => this.connectSoon(0);
    // The browser knows the network is gone: do not wait for a close handshake that cannot
    // complete, drop the connection now (messages sent meanwhile wait in the outbox).
    this.onOffline = () => {
      const ws = this.ws;
      if (!ws) return;
      ws.close(4000, 'offline');
      this.closed(ws, 4000);
    };
  }

  // ---- REST ----

  /**
   * Calls the API. Resolves to the parsed body (null for 204), rejects with ApiError.
   * @param {string} method
   * @param {string} path e.g. `/api/me`
   * @param {object} [body] sent as JSON
   * @returns {Promise<any>}
   */
  async request(method, path, body) {
    const headers = this.headers(body === undefined ? undefined : 'application/json');
    return this.fetchJson(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  }

  /** The token's header, and a Content-Type when there is a body. */
  headers(contentType) {
    const headers = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (contentType) headers['Content-Type'] = contentType;
    return headers;
  }

  async fetchJson(path, init) {
    let res;
    try {
      res = await fetch(this.baseUrl + path, init);
    } catch (e) {
      throw new ApiError(0, 'network', 'The server cannot be reached.');
    }
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!res.ok) {
      const err = json?.error ?? {};
      const retry = Number(res.headers.get('Retry-After')) || undefined;
      if (res.status === 401 && this.token && err.code === 'unauthorized') this.emit('unauthorized', {});
      throw new ApiError(res.status, err.code ?? 'internal', err.message ?? `HTTP ${res.status}`, retry);
    }
    return json;
  }

  /** Starts a signup; the code goes to the email. */
  signupInitiate({username, email, password}) {
    return this.request('POST', '/api/signup/initiate', {username, email, password});
  }
  /** Finishes a signup; keeps the token. @returns {Promise<{token: string, expires_at: string, user: User}>} */
  async signupVerify({email, otp}) {
    const answer = await this.request('POST', '/api/signup/verify', {email, otp});
    this.token = answer.token;
    return answer;
  }
  /**
   * Logs in by username or email (an `@` means email); keeps the token.
   * @returns {Promise<{token: string, expires_at: string, user: User}>}
   */
  async login({login, password}) {
    const field = login.includes('@') ? 'email' : 'username';
    const answer = await this.request('POST', '/api/login', {[field]: login, password});
    this.token = answer.token;
    return answer;
  }
  forgotInitiate(email) { return this.request('POST', '/api/forgot/initiate', {email}); }
  forgotReset({email, otp, newPassword}) {
    return this.request('POST', '/api/forgot/reset', {email, otp, new_password: newPassword});
  }
  /** Forgets the token and unsent messages and closes the connection (tokens are not revocable one by one). */
  logout() {
    this.disconnect();
    this.token = null;
    this.outbox = [];
    this.saveOutbox();
    // The next login starts afresh: no catch-up from this user's position.
    this.everOpened = false;
    this.seen = this.checkpoint = this.trailing = 0;
  }

  /** @returns {Promise<User>} */
  me() { return this.request('GET', '/api/me'); }
  /** @param {{username?: string, profile_picture?: ?string}} changes @returns {Promise<User>} */
  updateMe(changes) { return this.request('PUT', '/api/me', changes); }
  /** @returns {Promise<User>} */
  user(id) { return this.request('GET', `/api/users/${id}`); }
  /** @returns {Promise<User[]>} users whose name starts with `prefix` */
  async searchUsers(prefix, limit = 20) {
    const q = new URLSearchParams({search: prefix, limit: String(limit)});
    return (await this.request('GET', `/api/users?${q}`)).users;
  }
  /** @returns {Promise<{user_id: number, online: boolean, last_seen: ?string}>} */
  lastSeen(id) { return this.request('GET', `/api/users/${id}/last-seen`); }

  /** @returns {Promise<Conversation[]>} newest activity first */
  async conversations() { return (await this.request('GET', '/api/conversations')).conversations; }
  /** @returns {Promise<Conversation>} */
  conversation(id) { return this.request('GET', `/api/conversations/${id}`); }
  /** @returns {Promise<Conversation>} the one conversation with that user, made if new */
  createPrivate(userId) { return this.request('POST', '/api/conversations/private', {user_id: userId}); }
  /** @returns {Promise<Conversation>} */
  createGroup(name, memberIds = []) {
    return this.request('POST', '/api/conversations/group', {name, member_ids: memberIds});
  }
  rename(conversationId, name) { return this.request('PUT', `/api/conversations/${conversationId}`, {name}); }
  addParticipant(conversationId, userId, role = 'member') {
    return this.request('POST', `/api/conversations/${conversationId}/participants`, {user_id: userId, role});
  }
  setRole(conversationId, userId, role) {
    return this.request('PUT', `/api/conversations/${conversationId}/participants/${userId}`, {role});
  }
  /** Removes a member, or with one's own id leaves. */
  removeParticipant(conversationId, userId) {
    return this.request('DELETE', `/api/conversations/${conversationId}/participants/${userId}`);
  }

  /**
   * A page of history, ascending. Without a cursor, the newest page.
   * @param {number} conversationId
   * @param {{before?: number, after?: number, limit?: number}} [page]
   * @returns {Promise<{messages: Message[], has_more: boolean}>}
   */
  async history(conversationId, {before, after, limit = 50} = {}) {
    const q = new URLSearchParams({limit: String(limit)});
    if (before) q.set('before', String(before));
    if (after !== undefined) q.set('after', String(after));
    const page = await this.request('GET', `/api/conversations/${conversationId}/messages?${q}`);
    page.messages.forEach((m) => this.note(m));
    return page;
  }
  /** @returns {Promise<Message>} */
  edit(messageId, content) { return this.request('PATCH', `/api/messages/${messageId}`, {content}); }
  deleteMessage(messageId) { return this.request('DELETE', `/api/messages/${messageId}`); }
  /** @returns {Promise<Message>} */
  react(messageId, emoji) {
    return this.request('PUT', `/api/messages/${messageId}/reactions/${encodeURIComponent(emoji)}`);
  }
  /** @returns {Promise<Message>} */
  unreact(messageId, emoji) {
    return this.request('DELETE', `/api/messages/${messageId}/reactions/${encodeURIComponent(emoji)}`);
  }
  /** Moves the read marker (over the WebSocket when open). */
  markRead(conversationId, messageId) {
    if (this.state === 'open') {
      return this.call({type: 'read', conversation_id: conversationId, message_id: messageId});
    }
    return this.request('POST', '/api/messages/read', {conversation_id: conversationId, message_id: messageId});
  }
  /**
   * Messages matching every word of `q`, newest first.
   * @param {string} q
   * @param {{conversationId?: number, before?: number, limit?: number}} [options]
   * @returns {Promise<{messages: Message[], has_more: boolean}>}
   */
  search(q, {conversationId, before, limit = 20} = {}) {
    const p = new URLSearchParams({q, limit: String(limit)});
    if (conversationId) p.set('conversation_id', String(conversationId));
    if (before) p.set('before', String(before));
    return this.request('GET', `/api/search?${p}`);
  }
  /**
   * Uploads a file (streamed by the browser); attach the answer's `id` to a message.
   * @param {Blob} file
   * @param {string} [filename]
   * @returns {Promise<Attachment>}
   */
  upload(file, filename = file.name) {
    const q = filename ? `?filename=${encodeURIComponent(filename)}` : '';
    const headers = this.headers(file.type || 'application/octet-stream');
    return this.fetchJson(`/api/uploads${q}`, {method: 'POST', headers, body: file});
  }
  /** A URL an `<img>` or a link can load the attachment from (the token rides in the query). */
  attachmentUrl(attachment) {
    return `${this.baseUrl}${attachment.url}?token=${encodeURIComponent(this.token ?? '')}`;
  }

  // ---- sending, exactly once ----

  /**
   * Sends a message. It waits in the outbox while the connection is down and is sent again
   * after each reconnection until acknowledged: its `client_id` makes the server store it once.
   * Resolves to the stored Message; rejects with ApiError when the server refuses it for good.
   * @param {{conversationId: number, content: string, replyTo?: ?number, attachments?: string[]}} message
   * @returns {Promise<Message>}
   */
  send({conversationId, content, replyTo = null, attachments = []}) {
    /** @type {OutgoingMessage} */
    const item = {client_id: newClientId(), conversation_id: conversationId, content, reply_to: replyTo,
      attachments, queued_at: new Date().toISOString()};
    this.outbox.push(item);
    this.saveOutbox();
    const done = this.waitFor(item.client_id);
    this.flush();
    return done;
  }

  /** Resolves when the outbox item with this client_id is stored (also one restored from storage). */
  waitFor(clientId) {
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(clientId) ?? [];
      list.push({resolve, reject});
      this.waiters.set(clientId, list);
    });
  }

  flush() {
    if (this.state !== 'open') return;
    for (const item of this.outbox) {
      if (this.inFlight.has(item.client_id)) continue;
      this.inFlight.add(item.client_id);
      const frame = {type: 'message', conversation_id: item.conversation_id, content: item.content,
        client_id: item.client_id};
      if (item.reply_to) frame.reply_to = item.reply_to;
      if (item.attachments.length) frame.attachments = item.attachments;
      const ws = this.ws;
      this.call(frame).then(
          (message) => this.settle(item.client_id, message, null),
          (error) => {
            if (FINAL_SEND_ERRORS.has(error.code)) return this.settle(item.client_id, null, error);
            // Anything else is retried: on the next connection, or after the rate limit's wait.
            this.inFlight.delete(item.client_id);
            if (error.code === 'rate_limited' && ws === this.ws) {
              setTimeout(() => this.flush(), (error.retryAfter ?? 1) * 1000);
            }
          });
    }
  }

  settle(clientId, message, error) {
    this.inFlight.delete(clientId);
    this.outbox = this.outbox.filter((m) => m.client_id !== clientId);
    this.saveOutbox();
    this.emit('outbox', {outbox: this.outbox});
    for (const w of this.waiters.get(clientId) ?? []) error ? w.reject(error) : w.resolve(message);
    this.waiters.delete(clientId);
  }

  loadOutbox() {
    try {
      return JSON.parse(this.storage?.getItem('mmchat.outbox') ?? '[]');
    } catch {
      return [];
    }
  }
  saveOutbox() { this.storage?.setItem('mmchat.outbox', JSON.stringify(this.outbox)); }

  // ---- WebSocket ----

  /** Opens the WebSocket and keeps it open: reconnects with backoff and jitter, then catches up. */
  connect() {
    if (this.wanted) return;
    this.wanted = true;
    addEventListener('online', this.onOnline);
    addEventListener('offline', this.onOffline);
    this.timers.checkpoint = setInterval(() => {
      this.checkpoint = Math.max(this.checkpoint, this.trailing);
      this.trailing = this.seen;
    }, 5000);
    this.open();
  }

  /** Closes the WebSocket for good (until connect()). */
  disconnect() {
    this.wanted = false;
    removeEventListener('online', this.onOnline);
    removeEventListener('offline', this.onOffline);
    Object.values(this.timers).forEach((t) => { clearTimeout(t); clearInterval(t); });
    this.timers = {};
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
    this.setState('offline');
  }

  open() {
    if (!this.wanted || this.ws) return;
    if (typeof navigator !== 'undefined' && navigator.onLine === false) return this.setState('offline');
    const url = new URL(`${this.baseUrl}/api/ws`, location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('token', this.token ?? '');
    this.setState('connecting');
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => this.opened(ws);
    ws.onmessage = (e) => this.received(ws, e.data);
    ws.onclose = (e) => this.closed(ws, e.code);
  }

  async opened(ws) {
    this.lastHeard = Date.now();
    this.timers.ping = setInterval(() => this.check(ws), this.pingEveryMs / 2);
    const reconnected = this.everOpened;
    this.everOpened = true;
    this.setState('open');
    this.flush();
    if (!reconnected) return;
    try {
      await this.catchUp(ws);
      if (ws === this.ws) {
        this.attempt = 0;
        this.emit('status', {state: this.state, reconnected: true});
      }
    } catch {
      ws.close(4001, 'catch-up failed');  // a new connection tries again
    }
  }

  /**
   * Says the caller has loaded the current state (conversations, the pages it shows): a
   * reconnection then catches up from here. Call it after the first load.
   */
  caughtUp() {
    this.checkpoint = this.trailing = this.seen;
  }

  /** Fetches everything created or changed since the checkpoint, page by page. */
  async catchUp(ws) {
    let since = this.checkpoint;
    for (;;) {
      const q = new URLSearchParams({since: String(since), limit: '500'});
      const page = await this.request('GET', `/api/sync?${q}`);
      if (ws !== this.ws) return;
      for (const m of page.messages) {
        this.note(m);
        this.emit('synced', m);
      }
      if (!page.has_more || page.next_since == null) break;
      since = page.next_since;
    }
    this.checkpoint = this.seen;
  }

  check(ws) {
    if (ws !== this.ws) return;
    const quiet = Date.now() - this.lastHeard;
    if (quiet > this.pingEveryMs * 1.5) return ws.close(4002, 'no answer');  // a dead network
    if (quiet > this.pingEveryMs / 2) ws.send(JSON.stringify({type: 'ping'}));
  }

  received(ws, data) {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === 'ack') {
      const waiter = this.refs.get(frame.data.ref);
      this.refs.delete(frame.data.ref);
      if (!waiter) return;
      if (frame.data.ok) return waiter.resolve(frame.data.result);
      const e = frame.data.error;
      return waiter.reject(new ApiError(0, e.code, e.message, e.retry_after));
    }
    if (frame.type === 'message' || frame.type === 'message_updated') this.note(frame.data);
    if (frame.type === 'conversation' && frame.data.last_message) this.note(frame.data.last_message);
    if (frame.type !== 'pong') this.emit(frame.type, frame.data);
  }

  closed(ws, code) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearInterval(this.timers.ping);
    for (const w of this.refs.values()) w.reject(new ApiError(0, 'network', 'The connection closed.'));
    this.refs.clear();
    this.inFlight.clear();
    if (!this.wanted) return;
    this.setState('offline');
    // A refused upgrade looks like any other close: ask REST whether the token still holds.
    if (code === 1008 || code === 1006) this.me().catch(() => {});
    this.connectSoon();
  }

  connectSoon(delayMs) {
    if (!this.wanted || this.ws) return;
    clearTimeout(this.timers.reconnect);
    // Exponential backoff with full jitter: many clients cut off together do not return together.
    const ceiling = Math.min(this.maxBackoffMs, 500 * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 16);
    const wait = delayMs ?? Math.random() * ceiling;
    this.timers.reconnect = setTimeout(() => this.open(), wait);
  }

  /** Sends a frame with a `ref`; resolves to the ack's `result`, rejects with ApiError. */
  call(frame) {
    return new Promise((resolve, reject) => {
      if (this.state !== 'open' || !this.ws) return reject(new ApiError(0, 'network', 'Not connected.'));
      const ref = String(this.nextRef++);
      this.refs.set(ref, {resolve, reject});
      this.ws.send(JSON.stringify({...frame, ref}));
    });
  }

  /** Tells the other participants this user is typing (true) or stopped (false). */
  typing(conversationId, on) {
    if (this.state !== 'open') return;
    this.ws.send(JSON.stringify({type: on ? 'typing_start' : 'typing_stop', conversation_id: conversationId}));
  }

  note(message) {
    if (message.change_id > this.seen) this.seen = message.change_id;
  }
  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit('status', {state});
  }
  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, {detail})); }
}
