// The MmChat web client's start: log in, then list the conversations. Everything a user
// or another user wrote is put on the page as text (textContent), never as HTML.

const loginForm = document.getElementById('login');
const loginError = document.getElementById('login-error');
const list = document.getElementById('conversation-list');

/**
 * Calls the API; resolves to the parsed JSON body, rejects with the API's error message.
 * @param {string} method
 * @param {string} path
 * @param {string} [token]
 * @param {object} [body]
 */
async function api(method, path, token, body) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const json = res.status === 204 ? null : await res.json();
  if (!res.ok) throw new Error(json?.error?.message ?? `HTTP ${res.status}`);
  return json;
}

async function showConversations(token) {
  const {conversations} = await api('GET', '/api/conversations', token);
  list.replaceChildren(...conversations.map((c) => {
    const item = document.createElement('li');
    const others = c.participants.map((p) => p.username).join(', ');
    item.textContent = c.type === 'group' ? `${c.name} (${others})` : others;
    return item;
  }));
  loginForm.hidden = true;
  document.getElementById('conversations').hidden = false;
}

loginForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = new FormData(loginForm);
  const login = String(data.get('login'));
  const field = login.includes('@') ? 'email' : 'username';
  try {
    const {token} = await api('POST', '/api/login', undefined, {[field]: login, password: String(data.get('password'))});
    loginError.textContent = '';
    await showConversations(token);
  } catch (e) {
    loginError.textContent = e.message;
  }
});
