'use strict';
// The chat page. It holds no token: the browser sends the session cookie with the WebSocket
// upgrade, and chorus's connect hook asks the backend who that is. Messages go through the
// publish hook (which stores them and adds id and time); the last 50 of a room come from
// chorus's history, older ones from the backend's `older` rpc; typing goes through the
// `typing` rpc into typing:<room>.
(async () => {
  const $ = (id) => document.getElementById(id);
  const { ws } = await (await fetch('/config.json')).json();

  async function login() {
    const me = await fetch('/me');
    if (me.ok) return me.json();
    $('login').hidden = false;
    $('name').focus();
    return new Promise((resolve) => {
      $('login').addEventListener('submit', async (e) => {
        e.preventDefault();
        const r = await fetch('/login', {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ name: $('name').value }),
        });
        const body = await r.json();
        if (r.ok) resolve(body); else $('login-error').textContent = body.error;
      });
    });
  }

  const { user, rooms } = await login();
  $('login').hidden = true;
  $('chat').hidden = false;

  const centrifuge = new Centrifuge(ws);
  centrifuge.on('connecting', () => { $('state').textContent = 'connecting…'; });
  centrifuge.on('connected', () => { $('state').textContent = `online as ${user}`; });
  centrifuge.on('disconnected', (ctx) => { $('state').textContent = `disconnected (${ctx.code} ${ctx.reason})`; });

  let room = null; // { name, sub, typingSub, ids: sorted message ids, online: client → user, typers }

  function showError(e) { $('error').textContent = e ? `${e.message} (${e.code})` : ''; }

  function addMessage(m) {
    if (room.ids.includes(m.id)) return; // history and live publications may overlap
    const li = document.createElement('li');
    Object.assign(li.dataset, { id: m.id, user: m.user, time: m.time });
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = m.user;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.text;
    const time = document.createElement('time');
    time.textContent = new Date(m.time).toLocaleTimeString();
    li.append(who, text, time);
    const at = room.ids.findIndex((id) => id > m.id);
    const list = $('messages');
    const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    if (at < 0) {
      room.ids.push(m.id);
      list.appendChild(li);
      if (stick) list.scrollTop = list.scrollHeight;
    } else {
      room.ids.splice(at, 0, m.id);
      list.insertBefore(li, list.children[at]);
    }
  }

  function renderPresence() {
    const users = [...new Set(Object.values(room.online))].sort();
    $('presence').replaceChildren(...users.map((u) => Object.assign(document.createElement('li'), { textContent: u })));
  }

  function renderTyping() {
    const now = Date.now();
    const who = [...room.typers].filter(([, until]) => until > now).map(([u]) => u);
    $('typing').textContent = who.length ? `${who.join(', ')} ${who.length > 1 ? 'are' : 'is'} typing…` : '';
  }

  function join(name) {
    if (room) {
      for (const s of [room.sub, room.typingSub]) { s.unsubscribe(); centrifuge.removeSubscription(s); }
      clearInterval(room.timer);
    }
    const r = { name, ids: [], online: {}, typers: new Map() };
    room = r;
    $('messages').replaceChildren();
    $('presence').replaceChildren();
    $('typing').textContent = '';
    $('older').disabled = false;
    $('older').textContent = 'load older';
    $('room-title').textContent = `# ${name}`;
    for (const li of $('rooms').children) li.classList.toggle('current', li.dataset.room === name);

    r.sub = centrifuge.newSubscription(`room:${name}`, { joinLeave: true });
    r.sub.on('publication', (ctx) => { if (room === r) addMessage(ctx.data); });
    r.sub.on('subscribed', async (ctx) => {
      if (!ctx.recovered) { // first subscribe, or the gap was too long: the window from history
        const h = await r.sub.history({ limit: 50, reverse: true });
        if (room === r) h.publications.reverse().forEach((p) => addMessage(p.data)); // oldest first
      }
      const p = await r.sub.presence();
      if (room !== r) return;
      r.online = Object.fromEntries(Object.entries(p.clients).map(([c, i]) => [c, i.user]));
      renderPresence();
    });
    r.sub.on('join', (ctx) => { if (room === r) { r.online[ctx.info.client] = ctx.info.user; renderPresence(); } });
    r.sub.on('leave', (ctx) => { if (room === r) { delete r.online[ctx.info.client]; renderPresence(); } });
    r.sub.subscribe();

    r.typingSub = centrifuge.newSubscription(`typing:${name}`);
    r.typingSub.on('publication', (ctx) => {
      if (room !== r || ctx.data.user === user) return;
      r.typers.set(ctx.data.user, Date.now() + 3000);
      renderTyping();
    });
    r.typingSub.subscribe();
    r.timer = setInterval(renderTyping, 1000);
  }

  $('rooms').replaceChildren(...rooms.map((name) => {
    const li = document.createElement('li');
    li.dataset.room = name;
    const b = Object.assign(document.createElement('button'), { type: 'button', textContent: `# ${name}` });
    b.addEventListener('click', () => { if (room.name !== name) join(name); });
    li.appendChild(b);
    return li;
  }));

  $('older').addEventListener('click', async () => {
    const r = room;
    try {
      const res = await centrifuge.rpc('older', { room: r.name, before: r.ids[0] || null });
      if (room !== r) return;
      const list = $('messages');
      const fromBottom = list.scrollHeight - list.scrollTop; // keep what the reader sees in place
      res.data.messages.forEach(addMessage);
      list.scrollTop = list.scrollHeight - fromBottom;
      if (!res.data.more) {
        $('older').disabled = true;
        $('older').textContent = 'start of the room';
      }
    } catch (e) { showError(e); }
  });

  let lastTyping = 0;
  $('text').addEventListener('input', () => {
    if (Date.now() - lastTyping < 2000) return;
    lastTyping = Date.now();
    centrifuge.rpc('typing', { room: room.name }).catch(() => {});
  });

  $('send').addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = $('text').value;
    $('text').value = '';
    lastTyping = 0;
    try {
      await room.sub.publish({ text }); // the message itself arrives as a publication
      showError(null);
    } catch (err) { showError(err); }
  });

  join(rooms[0]);
  centrifuge.connect();
})();
