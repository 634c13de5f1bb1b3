// chorus demo chat — a small, dependency-free client of the Centrifugo v2 JSON protocol.
//
// Wire summary (see docs/protocol.md §1–§3):
//   * one WebSocket to /connection/websocket, JSON text frames, several objects per frame
//     joined with "\n";
//   * on open, `connect` and `subscribe` go in ONE frame (optimistic subscribe);
//   * a reply with `id` answers a command, a reply with `push` is an event, anything else
//     (`{}`) is a server ping that we answer with `{}` when the server asked for pongs;
//   * reconnects use full-jitter backoff (0.5–20 s) and resubscribe with
//     `recover:true, offset, epoch` so missed messages come back from history.
//
// Identity: the page asks GET /demo/token?name=<name> for a connection JWT
// (sub = name, info = {"name": name}). If that endpoint does not exist (404) the page
// connects without a token (insecure server) and relies on the `name` in payloads.
(function () {
  'use strict';

  var NAMESPACE = 'chat';
  var DEFAULT_ROOM = 'lobby';
  var HISTORY_LIMIT = 50;
  var MAX_MESSAGES = 500;
  var MIN_RECONNECT_MS = 500;
  var MAX_RECONNECT_MS = 20000;
  var COMMAND_TIMEOUT_MS = 5000;
  var MAX_SERVER_PING_DELAY_MS = 10000;
  var NAME_RE = /^[\p{L}\p{M}\p{N} _-]+$/u;

  // ---------------------------------------------------------------- DOM
  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    status: $('status'),
    statusDetail: $('status-detail'),
    joinForm: $('join-form'),
    name: $('name'),
    room: $('room'),
    join: $('join'),
    leave: $('leave'),
    joinError: $('join-error'),
    roomTitle: $('room-title'),
    messages: $('messages'),
    empty: $('empty'),
    composer: $('composer'),
    message: $('message'),
    send: $('send'),
    presence: $('presence'),
    presenceCount: $('presence-count')
  };

  // ---------------------------------------------------------------- helpers
  function validName(raw) {
    var name = String(raw || '').trim();
    var len = Array.from(name).length;
    if (len < 1 || len > 32 || !NAME_RE.test(name)) return null;
    return name;
  }

  function roomToChannel(raw) {
    var room = String(raw || '').trim();
    if (room.indexOf(NAMESPACE + ':') === 0) room = room.slice(NAMESPACE.length + 1);
    if (!room) room = DEFAULT_ROOM;
    if (!/^[A-Za-z0-9_.\-]{1,64}$/.test(room)) return null;
    return NAMESPACE + ':' + room;
  }

  function backoff(attempt) {
    // "Full jitter", as centrifuge-js: min + random(0, min(max, min * 2^attempt)), capped.
    var exp = Math.min(MAX_RECONNECT_MS, MIN_RECONNECT_MS * Math.pow(2, Math.min(attempt, 31)));
    return Math.min(MAX_RECONNECT_MS, MIN_RECONNECT_MS + Math.floor(Math.random() * exp));
  }

  function wsUrl() {
    var scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return scheme + '//' + location.host + '/connection/websocket';
  }

  function obj(v) { return v && typeof v === 'object' ? v : {}; }

  function setStatus(state, detail) {
    ui.status.textContent = state;
    ui.status.setAttribute('data-state', state);
    ui.statusDetail.textContent = detail || '';
    document.body.setAttribute('data-state', state);
    ui.send.disabled = state !== 'connected';
  }

  function showJoinError(text) { ui.joinError.textContent = text || ''; }

  // ---------------------------------------------------------------- messages view
  // Model: publications keyed by offset within the current epoch (offset 0 = no history,
  // always appended). Rendering keeps DOM order == offset order and never shows a
  // publication twice (history and live pushes can overlap right after subscribing).
  var seenOffsets = new Set();

  function clearMessages() {
    seenOffsets.clear();
    ui.messages.textContent = '';
    updateEmpty();
  }

  function updateEmpty() {
    ui.empty.hidden = ui.messages.children.length > 0;
  }

  function authorOf(pub) {
    var info = obj(pub.info);
    var connInfo = obj(info.conn_info);
    var data = obj(pub.data);
    var name = connInfo.name || info.user || data.name;
    return typeof name === 'string' && name ? name : 'anonymous';
  }

  function textOf(pub) {
    var data = pub.data;
    if (data && typeof data === 'object' && typeof data.text === 'string') return data.text;
    if (typeof data === 'string') return data;
    try { return JSON.stringify(data); } catch (e) { return String(data); }
  }

  function addPublication(pub, source) {
    pub = obj(pub);
    var offset = typeof pub.offset === 'number' ? pub.offset : 0;
    if (offset > 0) {
      if (seenOffsets.has(offset)) return;
      seenOffsets.add(offset);
    }
    var stick = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 40;

    var author = authorOf(pub);
    var li = document.createElement('li');
    li.className = 'message';
    if (author === client.name) li.classList.add('mine');
    li.setAttribute('data-testid', 'message');
    li.setAttribute('data-author', author);
    li.setAttribute('data-offset', String(offset));
    li.setAttribute('data-source', source);
    var who = document.createElement('span');
    who.className = 'author';
    who.textContent = author;
    var body = document.createElement('span');
    body.className = 'text';
    body.textContent = textOf(pub);
    li.appendChild(who);
    li.appendChild(body);

    // Insert in offset order: walk back from the end (the common case is appending).
    var before = null;
    if (offset > 0) {
      var node = ui.messages.lastElementChild;
      while (node) {
        var o = Number(node.getAttribute('data-offset'));
        if (o > 0 && o < offset) break;
        if (o > offset) before = node;
        node = node.previousElementSibling;
      }
    }
    ui.messages.insertBefore(li, before);

    while (ui.messages.children.length > MAX_MESSAGES) {
      var first = ui.messages.firstElementChild;
      seenOffsets.delete(Number(first.getAttribute('data-offset')));
      ui.messages.removeChild(first);
    }
    updateEmpty();
    if (stick || source === 'history') ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function addNotice(text) {
    var li = document.createElement('li');
    li.className = 'notice';
    li.setAttribute('data-offset', '0');
    li.textContent = text;
    ui.messages.appendChild(li);
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  // ---------------------------------------------------------------- presence view
  // clients: client id -> ClientInfo. Rendered as distinct people with a tab count.
  var clients = new Map();

  function personOf(info) {
    var connInfo = obj(info.conn_info);
    var name = connInfo.name || info.user;
    if (typeof name !== 'string' || !name) name = 'guest-' + String(info.client || '').slice(0, 4);
    return name;
  }

  function renderPresence() {
    var people = new Map();
    clients.forEach(function (info) {
      var name = personOf(info);
      people.set(name, (people.get(name) || 0) + 1);
    });
    var names = Array.from(people.keys()).sort(function (a, b) {
      return a.localeCompare(b);
    });
    ui.presence.textContent = '';
    names.forEach(function (name) {
      var li = document.createElement('li');
      li.className = 'presence-user';
      if (name === client.name) li.classList.add('self');
      li.setAttribute('data-testid', 'presence-user');
      li.setAttribute('data-user', name);
      li.setAttribute('data-tabs', String(people.get(name)));
      li.title = people.get(name) === 1 ? '1 tab' : people.get(name) + ' tabs';
      // textContent is exactly the name; the tab count is drawn by CSS from data-tabs.
      li.textContent = name;
      ui.presence.appendChild(li);
    });
    ui.presenceCount.textContent = String(names.length);
  }

  // ---------------------------------------------------------------- client
  var client = {
    name: null,
    channel: null,
    token: '',
    ws: null,
    nextId: 1,            // never reset, like centrifuge-js
    pending: new Map(),   // id -> {resolve, reject, timer}
    connected: false,
    subscribed: false,
    pong: false,
    pingTimer: null,
    reconnectTimer: null,
    attempt: 0,
    active: false,        // user wants to be in the room
    epoch: null,          // stream position for recovery
    offset: 0,
    recoverable: false,
    presenceDeltas: null  // join/leave pushes buffered while a presence call is in flight
  };

  function send(cmds) {
    if (!client.ws || client.ws.readyState !== WebSocket.OPEN) return false;
    client.ws.send(cmds.map(function (c) { return JSON.stringify(c); }).join('\n'));
    return true;
  }

  function command(method, params) {
    var id = client.nextId++;
    var cmd = { id: id };
    cmd[method] = params;
    return { cmd: cmd, promise: track(id, method) };
  }

  function track(id, method) {
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () {
        client.pending.delete(id);
        reject({ code: 1, message: method + ' timeout', timeout: true });
      }, COMMAND_TIMEOUT_MS);
      client.pending.set(id, { resolve: resolve, reject: reject, timer: timer, method: method });
    });
  }

  function call(method, params) {
    var c = command(method, params);
    if (!send([c.cmd])) {
      var p = client.pending.get(c.cmd.id);
      if (p) { clearTimeout(p.timer); client.pending.delete(c.cmd.id); }
      return Promise.reject({ code: 0, message: 'not connected' });
    }
    return c.promise;
  }

  function failPending(reason) {
    client.pending.forEach(function (p) {
      clearTimeout(p.timer);
      p.reject({ code: 0, message: reason });
    });
    client.pending.clear();
  }

  function fetchToken(name) {
    return fetch('/demo/token?name=' + encodeURIComponent(name), {
      headers: { 'Accept': 'application/json' },
      cache: 'no-store'
    }).then(function (resp) {
      if (resp.status === 404 || resp.status === 405) return ''; // no demo token endpoint
      if (!resp.ok) {
        return resp.text().then(function (t) {
          var err = new Error('token request failed: HTTP ' + resp.status + (t ? ' ' + t : ''));
          err.terminal = resp.status >= 400 && resp.status < 500;
          throw err;
        });
      }
      return resp.json().then(function (body) { return obj(body).token || ''; });
    });
  }

  function subscribeParams() {
    var p = { channel: client.channel, join_leave: true, recoverable: true };
    if (client.recoverable && client.epoch !== null) {
      p.recover = true;
      p.offset = client.offset;
      p.epoch = client.epoch;
    }
    return p;
  }

  function openConnection() {
    if (!client.active) return;
    clearTimeout(client.reconnectTimer);
    client.reconnectTimer = null;
    setStatus(client.attempt === 0 ? 'connecting' : 'reconnecting', 'fetching token…');

    fetchToken(client.name).then(function (token) {
      if (!client.active) return;
      client.token = token;
      setStatus(client.attempt === 0 ? 'connecting' : 'reconnecting', 'opening socket…');
      var ws;
      try {
        ws = new WebSocket(wsUrl());
      } catch (e) {
        scheduleReconnect('socket error: ' + e.message);
        return;
      }
      client.ws = ws;
      var openGuard = setTimeout(function () {
        if (ws.readyState !== WebSocket.OPEN) ws.close();
      }, COMMAND_TIMEOUT_MS);

      ws.onopen = function () {
        clearTimeout(openGuard);
        if (client.ws !== ws) return;
        onOpen();
      };
      ws.onmessage = function (ev) {
        if (client.ws !== ws) return;
        onFrame(ev.data);
      };
      ws.onclose = function (ev) {
        clearTimeout(openGuard);
        if (client.ws !== ws) return;
        onClose(ev.code, ev.reason);
      };
      ws.onerror = function () { /* onclose follows */ };
    }, function (err) {
      if (!client.active) return;
      if (err && err.terminal) {
        stop('disconnected', err.message);
        showJoinError(err.message);
        return;
      }
      scheduleReconnect(err && err.message ? err.message : 'token request failed');
    });
  }

  function onOpen() {
    setStatus(client.attempt === 0 ? 'connecting' : 'reconnecting', 'handshake…');
    var connectParams = { name: 'chorus-demo', data: { name: client.name } };
    if (client.token) connectParams.token = client.token;
    var c1 = command('connect', connectParams);
    var c2 = command('subscribe', subscribeParams());
    send([c1.cmd, c2.cmd]); // one frame: connect + optimistic subscribe

    c1.promise.then(onConnected, function (err) {
      onConnectError(err);
    });
    c2.promise.then(onSubscribed, function (err) {
      onSubscribeError(err);
    });
  }

  function onConnected(result) {
    result = obj(result);
    client.connected = true;
    client.attempt = 0;
    client.pong = !!result.pong;
    client.pingInterval = typeof result.ping === 'number' ? result.ping : 0;
    armPingTimer();
    if (!client.subscribed) setStatus('connecting', 'subscribing to ' + client.channel + '…');
  }

  function onConnectError(err) {
    err = obj(err);
    if (err.message === 'connection closed') return; // onClose handles it
    var code = err.code || 0;
    // centrifuge-js: code < 100, temporary, or 109 (token expired) → reconnect; else terminal.
    if (code < 100 || err.temporary || code === 109 || err.timeout) {
      closeSocket();
      scheduleReconnect('connect failed: ' + (err.message || code));
    } else {
      stop('disconnected', 'connect rejected: ' + code + ' ' + (err.message || ''));
    }
  }

  function onSubscribed(result) {
    result = obj(result);
    var epochChanged = client.epoch !== null && result.epoch && result.epoch !== client.epoch;
    var lostMessages = result.was_recovering && !result.recovered;
    client.subscribed = true;
    client.recoverable = !!result.recoverable;
    if (typeof result.epoch === 'string' && result.epoch) client.epoch = result.epoch;
    if (typeof result.offset === 'number') client.offset = Math.max(0, result.offset);
    setStatus('connected', client.channel);

    var pubs = Array.isArray(result.publications) ? result.publications : [];
    if (result.recovered) {
      pubs.forEach(function (p) { onPublication(p, 'recovered'); });
    } else {
      if (epochChanged || lostMessages) {
        clearMessages();
        if (lostMessages) addNotice('Reconnected — some messages could not be recovered; reloaded recent history.');
      }
      loadHistory();
    }
    loadPresence();
  }

  function onSubscribeError(err) {
    err = obj(err);
    if (err.message === 'connection closed') return;
    var code = err.code || 0;
    if (err.timeout) {
      // A subscribe timeout reconnects the whole connection (as centrifuge-js does).
      closeSocket();
      scheduleReconnect('subscribe timeout');
    } else if (code < 100 || err.temporary || code === 109) {
      setTimeout(resubscribe, backoff(client.attempt++));
      setStatus('connecting', 'subscribe failed (' + code + '), retrying…');
    } else {
      stop('disconnected', 'subscribe rejected: ' + code + ' ' + (err.message || ''));
      showJoinError('Cannot join ' + client.channel + ': ' + (err.message || code));
    }
  }

  function resubscribe() {
    if (!client.active || !client.connected || client.subscribed) return;
    call('subscribe', subscribeParams()).then(onSubscribed, onSubscribeError);
  }

  function loadHistory() {
    var channel = client.channel;
    call('history', { channel: channel, limit: HISTORY_LIMIT, reverse: true }).then(function (res) {
      if (client.channel !== channel) return;
      var pubs = Array.isArray(obj(res).publications) ? res.publications.slice() : [];
      pubs.reverse(); // newest-first → oldest-first
      pubs.forEach(function (p) { addPublication(p, 'history'); });
    }, function (err) {
      err = obj(err);
      if (err.code === 108 || err.code === 103) return; // history not available here
      if (err.message !== 'connection closed') addNotice('Could not load history: ' + (err.message || err.code));
    });
  }

  function loadPresence() {
    var channel = client.channel;
    client.presenceDeltas = [];
    call('presence', { channel: channel }).then(function (res) {
      if (client.channel !== channel) return;
      var snapshot = obj(obj(res).presence);
      var deltas = client.presenceDeltas || [];
      client.presenceDeltas = null;
      clients.clear();
      Object.keys(snapshot).forEach(function (id) { clients.set(id, obj(snapshot[id])); });
      deltas.forEach(applyPresenceDelta);
      renderPresence();
    }, function () {
      // Presence unavailable: fall back to join/leave pushes only.
      var deltas = client.presenceDeltas || [];
      client.presenceDeltas = null;
      deltas.forEach(applyPresenceDelta);
      renderPresence();
    });
  }

  function applyPresenceDelta(d) {
    var info = obj(d.info);
    if (!info.client) return;
    if (d.kind === 'join') clients.set(info.client, info);
    else clients.delete(info.client);
  }

  function onPublication(pub, source) {
    pub = obj(pub);
    if (typeof pub.offset === 'number' && pub.offset > client.offset) client.offset = pub.offset;
    if (typeof pub.epoch === 'string' && pub.epoch) client.epoch = pub.epoch;
    addPublication(pub, source);
  }

  function onPush(push) {
    push = obj(push);
    if (push.channel !== undefined && push.channel !== client.channel) return;
    if (push.pub) {
      onPublication(push.pub, 'live');
    } else if (push.join || push.leave) {
      var d = { kind: push.join ? 'join' : 'leave', info: obj((push.join || push.leave).info) };
      if (client.presenceDeltas) client.presenceDeltas.push(d);
      applyPresenceDelta(d);
      renderPresence();
    } else if (push.unsubscribe) {
      client.subscribed = false;
      var code = obj(push.unsubscribe).code || 0;
      if (code >= 2500) {
        setStatus('connecting', 'resubscribing…');
        setTimeout(resubscribe, backoff(0));
      } else {
        stop('disconnected', 'unsubscribed by server: ' + (obj(push.unsubscribe).reason || code));
      }
    }
    // `message`, `subscribe` (server-side subs) and others are not used by the demo.
  }

  function onFrame(data) {
    if (typeof data !== 'string') return; // JSON protocol uses text frames only
    armPingTimer();
    var lines = data.trim().split('\n');
    for (var i = 0; i < lines.length; i++) {
      var line = lines[i];
      if (!line) continue;
      var reply;
      try { reply = JSON.parse(line); } catch (e) { continue; }
      reply = obj(reply);
      if (reply.id > 0) {
        var p = client.pending.get(reply.id);
        if (!p) continue;
        client.pending.delete(reply.id);
        clearTimeout(p.timer);
        if (reply.error) p.reject(obj(reply.error));
        else p.resolve(reply[p.method]);
      } else if (reply.push) {
        onPush(reply.push);
      } else if (client.pong) {
        send([{}]); // server ping → pong
      }
    }
  }

  function armPingTimer() {
    clearTimeout(client.pingTimer);
    if (!client.connected || !client.pingInterval) return;
    client.pingTimer = setTimeout(function () {
      closeSocket();
      scheduleReconnect('no ping from server');
    }, client.pingInterval * 1000 + MAX_SERVER_PING_DELAY_MS);
  }

  function onClose(code, reason) {
    var wasConnected = client.connected;
    resetConnectionState('connection closed');
    client.ws = null;
    if (!client.active) return;
    var why = 'closed' + (code ? ' ' + code : '') + (reason ? ' ' + reason : '');
    // Terminal per protocol: 1009 and 3500–3999, 4500–4999. Everything else reconnects.
    if (code === 1009 || (code >= 3500 && code < 4000) || (code >= 4500 && code < 5000)) {
      stop('disconnected', why);
      return;
    }
    if (wasConnected) addNotice('Connection lost (' + why + '), reconnecting…');
    scheduleReconnect(why);
  }

  function resetConnectionState(reason) {
    clearTimeout(client.pingTimer);
    client.connected = false;
    client.subscribed = false;
    client.pong = false;
    client.presenceDeltas = null;
    failPending(reason);
  }

  function closeSocket() {
    var ws = client.ws;
    client.ws = null;
    resetConnectionState('connection closed');
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (e) { /* ignore */ }
    }
  }

  function scheduleReconnect(why) {
    if (!client.active || client.reconnectTimer) return;
    var delay = backoff(client.attempt++);
    setStatus('reconnecting', why + ' — retry in ' + (delay / 1000).toFixed(1) + ' s');
    client.reconnectTimer = setTimeout(function () {
      client.reconnectTimer = null;
      openConnection();
    }, delay);
  }

  function stop(state, detail) {
    client.active = false;
    clearTimeout(client.reconnectTimer);
    client.reconnectTimer = null;
    closeSocket();
    setStatus(state, detail);
    ui.leave.disabled = true;
    ui.join.disabled = false;
  }

  // ---------------------------------------------------------------- actions
  function join(name, channel) {
    stop('disconnected', '');
    client.name = name;
    client.channel = channel;
    client.epoch = null;
    client.offset = 0;
    client.recoverable = false;
    client.attempt = 0;
    client.active = true;
    clients.clear();
    renderPresence();
    clearMessages();
    ui.roomTitle.textContent = channel;
    ui.leave.disabled = false;
    try {
      localStorage.setItem('chorus-demo-name', name);
      localStorage.setItem('chorus-demo-room', channel.slice(NAMESPACE.length + 1));
    } catch (e) { /* storage may be unavailable */ }
    openConnection();
  }

  function publish(text) {
    return call('publish', { channel: client.channel, data: { text: text, name: client.name } });
  }

  ui.joinForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    showJoinError('');
    var name = validName(ui.name.value);
    if (!name) {
      showJoinError('Name: 1–32 letters, digits, spaces, "-" or "_".');
      ui.name.focus();
      return;
    }
    var channel = roomToChannel(ui.room.value);
    if (!channel) {
      showJoinError('Room: letters, digits, ".", "-" or "_".');
      ui.room.focus();
      return;
    }
    ui.name.value = name;
    join(name, channel);
    ui.message.focus();
  });

  ui.leave.addEventListener('click', function () {
    stop('disconnected', 'left ' + (client.channel || ''));
    clients.clear();
    renderPresence();
  });

  ui.composer.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var text = ui.message.value.trim();
    if (!text) return;
    if (!client.subscribed) {
      setStatus(ui.status.textContent, 'not connected — message not sent');
      return;
    }
    ui.message.value = '';
    publish(text).catch(function (err) {
      err = obj(err);
      ui.message.value = ui.message.value || text; // give the text back
      ui.statusDetail.textContent = 'send failed: ' + (err.message || err.code);
    });
  });

  // Enter in #message sends (the form submit already does it; this also covers IME-less
  // environments where the input is not inside a form submit path).
  ui.message.addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      if (typeof ui.composer.requestSubmit === 'function') ui.composer.requestSubmit();
      else ui.composer.dispatchEvent(new Event('submit', { cancelable: true }));
    }
  });

  window.addEventListener('online', function () {
    if (client.active && !client.ws) {
      clearTimeout(client.reconnectTimer);
      client.reconnectTimer = null;
      openConnection();
    }
  });

  // ---------------------------------------------------------------- init
  (function init() {
    var params = new URLSearchParams(location.search);
    var savedName = null;
    var savedRoom = null;
    try {
      savedName = localStorage.getItem('chorus-demo-name');
      savedRoom = localStorage.getItem('chorus-demo-room');
    } catch (e) { /* ignore */ }
    ui.name.value = params.get('name') || savedName || '';
    ui.room.value = (params.get('room') || savedRoom || DEFAULT_ROOM).replace(/^chat:/, '');
    ui.roomTitle.textContent = roomToChannel(ui.room.value) || NAMESPACE + ':' + DEFAULT_ROOM;
    setStatus('disconnected', 'enter a name and join');
    updateEmpty();
    renderPresence();
    if (params.get('autojoin') === '1' && validName(ui.name.value)) {
      ui.joinForm.requestSubmit ? ui.joinForm.requestSubmit() : join(validName(ui.name.value), roomToChannel(ui.room.value));
    } else {
      ui.name.focus();
    }
  })();

  // Exposed for debugging in the browser console and for tests.
  window.chorusDemo = { client: client, publish: publish, backoff: backoff };
})();
