// chorus admin console: hand-written, no dependencies. It acts only through the server API:
// `POST api/<method>` (relative to this page: /admin/api/<method>) with the session token
// from `POST auth` in `Authorization: token <token>`. Everything shown is inserted as text
// (channel names, user ids and payloads come from clients).
'use strict';

(() => {
  const TOKEN_KEY = 'chorus-admin-token';
  const REFRESH_MS = 3000;
  const $ = (id) => document.getElementById(id);

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let refreshTimer = null;
  let view = 'nodes';

  class ApiError extends Error {}

  // ---- messages -------------------------------------------------------------------------
  function say(el, text, state) {
    el.textContent = text || '';
    el.dataset.state = text ? state || 'error' : '';
  }
  const describe = (e) => (e && e.message) || String(e);

  // ---- server calls ---------------------------------------------------------------------
  /** Calls API `method` with the JSON text `body`; resolves to its `result`. */
  async function callRaw(method, body) {
    let res;
    try {
      res = await fetch('api/' + encodeURIComponent(method), {
        method: 'POST',
        headers: { 'Authorization': 'token ' + token, 'Content-Type': 'application/json' },
        body,
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError('server unreachable: ' + describe(e));
    }
    const text = await res.text();
    if (res.status === 401) {
      signOut('Your session expired or is no longer valid: sign in again.');
      throw new ApiError('not signed in');
    }
    if (!res.ok) throw new ApiError('HTTP ' + res.status + ': ' + text.trim());
    let reply;
    try {
      reply = JSON.parse(text);
    } catch (_) {
      throw new ApiError('the server answered something that is not JSON');
    }
    if (reply.error) {
      throw new ApiError('error ' + reply.error.code + ': ' + reply.error.message);
    }
    return reply.result || {};
  }

  const call = (method, params) => callRaw(method, JSON.stringify(params || {}));

  async function signIn(password) {
    let res;
    try {
      res = await fetch('auth', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ password }),
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError('server unreachable: ' + describe(e));
    }
    if (res.status === 200) {
      const body = await res.json();
      return body.token;
    }
    if (res.status === 401) throw new ApiError('Wrong password.');
    if (res.status === 429) {
      throw new ApiError('Too many sign-in attempts: wait a few seconds and try again.');
    }
    throw new ApiError('Sign-in failed: HTTP ' + res.status + ' ' + (await res.text()).trim());
  }

  // ---- session and views ----------------------------------------------------------------
  function showConsole() {
    $('login-view').hidden = true;
    $('console').hidden = false;
    $('tabs').hidden = false;
    $('logout').hidden = false;
    show(view);
  }

  function signOut(message) {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    stopRefresh();
    $('console').hidden = true;
    $('tabs').hidden = true;
    $('logout').hidden = true;
    $('login-view').hidden = false;
    $('password').value = '';
    say($('login-error'), message || '', 'info');
    $('password').focus();
  }

  function show(name) {
    view = name;
    for (const tab of document.querySelectorAll('.tab')) {
      tab.setAttribute('aria-selected', String(tab.dataset.view === name));
    }
    for (const section of document.querySelectorAll('#console section[data-view]')) {
      section.hidden = section.dataset.view !== name;
    }
    stopRefresh();
    if (name === 'nodes') {
      refreshNodes();
      refreshTimer = setInterval(refreshNodes, REFRESH_MS);
    } else if (name === 'channels') {
      listChannels();
    }
  }

  function stopRefresh() {
    if (refreshTimer !== null) clearInterval(refreshTimer);
    refreshTimer = null;
  }

  // ---- helpers for tables ---------------------------------------------------------------
  function cell(row, text, className) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function emptyRow(tbody, columns, text) {
    const row = document.createElement('tr');
    const td = cell(row, text, 'empty');
    td.colSpan = columns;
    tbody.appendChild(row);
  }

  function uptime(seconds) {
    let s = Number(seconds) || 0;
    const d = Math.floor(s / 86400);
    s %= 86400;
    const h = Math.floor(s / 3600);
    s %= 3600;
    const m = Math.floor(s / 60);
    s %= 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + s + 's';
    return s + 's';
  }

  const json = (value) => (value === undefined ? '' : JSON.stringify(value));

  // ---- nodes ----------------------------------------------------------------------------
  async function refreshNodes() {
    try {
      const result = await call('info', {});
      const nodes = (result.nodes || []).slice().sort((a, b) => (a.name || '').localeCompare(b.name || ''));
      const tbody = $('nodes');
      tbody.replaceChildren();
      for (const n of nodes) {
        const row = document.createElement('tr');
        row.className = 'node';
        row.dataset.uid = n.uid || '';
        cell(row, n.name || n.uid || '?', 'name');
        cell(row, n.version || '');
        cell(row, String(n.num_clients || 0), 'num clients');
        cell(row, String(n.num_users || 0), 'num users');
        cell(row, String(n.num_channels || 0), 'num channels');
        cell(row, String(n.num_subs || 0), 'num subs');
        cell(row, uptime(n.uptime), 'num uptime');
        tbody.appendChild(row);
      }
      if (!nodes.length) emptyRow(tbody, 7, 'No nodes answered.');
      $('nodes-count').textContent = '(' + nodes.length + ')';
      $('nodes-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      say($('nodes-error'), '');
    } catch (e) {
      say($('nodes-error'), describe(e));
    }
  }

  // ---- channels -------------------------------------------------------------------------
  async function listChannels() {
    const tbody = $('channels');
    try {
      const result = await call('channels', { pattern: $('channels-pattern').value.trim() });
      const names = Object.keys(result.channels || {}).sort();
      tbody.replaceChildren();
      for (const name of names) {
        const row = document.createElement('tr');
        row.className = 'channel';
        const link = document.createElement('button');
        link.type = 'button';
        link.className = 'link';
        link.textContent = name;
        link.addEventListener('click', () => {
          $('lookup-channel').value = name;
          lookup();
        });
        row.appendChild(document.createElement('td')).appendChild(link);
        cell(row, String(result.channels[name].num_clients || 0), 'num');
        tbody.appendChild(row);
      }
      if (!names.length) emptyRow(tbody, 2, 'No active channels.');
      say($('channels-error'), '');
    } catch (e) {
      say($('channels-error'), describe(e));
    }
  }

  async function lookup() {
    const channel = $('lookup-channel').value.trim();
    if (!channel) return;
    const limit = Math.max(1, Math.min(1000, Number($('history-limit').value) || 10));
    $('lookup-result').hidden = false;
    $('lookup-result').dataset.channel = channel;
    const [stats, presence, history] = await Promise.allSettled([
      call('presence_stats', { channel }),
      call('presence', { channel }),
      call('history', { channel, limit, reverse: true }),
    ]);

    if (stats.status === 'fulfilled') {
      const s = stats.value;
      $('stats').textContent = channel + ': ' + (s.num_clients || 0) + ' client(s), ' + (s.num_users || 0) + ' user(s)';
      say($('stats-error'), '');
    } else {
      $('stats').textContent = channel;
      say($('stats-error'), 'presence stats: ' + describe(stats.reason));
    }

    const tbody = $('presence');
    tbody.replaceChildren();
    if (presence.status === 'fulfilled') {
      const clients = Object.values(presence.value.presence || {});
      clients.sort((a, b) => (a.user || '').localeCompare(b.user || '') || (a.client || '').localeCompare(b.client || ''));
      for (const c of clients) {
        const row = document.createElement('tr');
        row.className = 'client';
        row.dataset.user = c.user || '';
        cell(row, c.user || '(anonymous)', 'user');
        cell(row, c.client || '', 'mono');
        cell(row, json(c.conn_info !== undefined ? c.conn_info : c.chan_info), 'mono');
        tbody.appendChild(row);
      }
      if (!clients.length) emptyRow(tbody, 3, 'Nobody is subscribed.');
      say($('presence-error'), '');
    } else {
      say($('presence-error'), 'presence: ' + describe(presence.reason));
    }

    const list = $('history');
    list.replaceChildren();
    if (history.status === 'fulfilled') {
      const h = history.value;
      const pubs = h.publications || [];
      $('history-position').textContent = h.epoch ? '(offset ' + (h.offset || 0) + ', epoch ' + h.epoch + ')' : '';
      for (const p of pubs) {
        const item = document.createElement('li');
        item.className = 'publication';
        const offset = document.createElement('span');
        offset.className = 'offset';
        offset.textContent = '#' + (p.offset || 0);
        const data = document.createElement('code');
        data.className = 'data';
        data.textContent = json(p.data);
        item.append(offset, data);
        list.appendChild(item);
      }
      if (!pubs.length) {
        const item = document.createElement('li');
        item.className = 'empty';
        item.textContent = 'No publications kept.';
        list.appendChild(item);
      }
      say($('history-error'), '');
    } else {
      $('history-position').textContent = '';
      say($('history-error'), 'history: ' + describe(history.reason));
    }
  }

  // ---- publish and disconnect -----------------------------------------------------------
  async function publish() {
    const out = $('publish-result');
    const channel = $('pub-channel').value.trim();
    const text = $('pub-data').value;
    if (!channel) return say(out, 'Enter a channel.');
    try {
      JSON.parse(text);
    } catch (e) {
      return say(out, 'Data is not valid JSON: ' + describe(e));
    }
    // The data goes out as typed (already checked to be JSON), so subscribers get exactly it.
    const body = '{"channel":' + JSON.stringify(channel) + ',"data":' + text + '}';
    try {
      const result = await callRaw('publish', body);
      const where = result.offset ? ' (offset ' + result.offset + ', epoch ' + result.epoch + ')' : '';
      say(out, 'Published to ' + channel + where + '.', 'ok');
    } catch (e) {
      say(out, describe(e));
    }
  }

  async function disconnect() {
    const out = $('disconnect-result');
    const user = $('dc-user').value.trim();
    if (!user) return say(out, 'Enter a user ID.');
    try {
      await call('disconnect', { user });
      say(out, 'Disconnected every connection of user ' + user + '.', 'ok');
    } catch (e) {
      say(out, describe(e));
    }
  }

  // ---- wiring ---------------------------------------------------------------------------
  function onSubmit(id, handler) {
    $(id).addEventListener('submit', (event) => {
      event.preventDefault();
      handler();
    });
  }

  onSubmit('login-form', async () => {
    const button = $('login');
    button.disabled = true;
    say($('login-error'), '');
    try {
      token = await signIn($('password').value);
      sessionStorage.setItem(TOKEN_KEY, token);
      $('password').value = '';
      showConsole();
    } catch (e) {
      say($('login-error'), describe(e));
    } finally {
      button.disabled = false;
    }
  });
  onSubmit('channels-form', listChannels);
  onSubmit('lookup-form', lookup);
  onSubmit('publish-form', publish);
  onSubmit('disconnect-form', disconnect);
  for (const tab of document.querySelectorAll('.tab')) {
    tab.addEventListener('click', () => show(tab.dataset.view));
  }
  $('logout').addEventListener('click', () => signOut('Signed out.'));

  if (token) showConsole();
  else $('password').focus();
})();
