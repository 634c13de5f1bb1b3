'use strict';
// Subscribes to a few symbols (?symbols=S000,S001,S002) and shows each one's latest price.
// The namespace recovers in cache mode: after a reconnect the page gets each symbol's latest
// tick at once instead of the backlog.
(async () => {
  const params = new URLSearchParams(location.search);
  const symbols = (params.get('symbols') || 'S000,S001,S002').split(',').filter(Boolean);
  const { ws } = await (await fetch('/config.json')).json();
  const state = document.getElementById('state');
  const rows = document.getElementById('rows');
  const cells = {};
  for (const s of symbols) {
    const tr = document.createElement('tr');
    tr.dataset.symbol = s;
    for (const k of ['symbol', 'price', 'ticks', 'time']) {
      const td = document.createElement('td');
      td.className = k;
      td.textContent = k === 'symbol' ? s : '–';
      tr.appendChild(td);
    }
    rows.appendChild(tr);
    cells[s] = { tr, price: tr.querySelector('.price'), ticks: tr.querySelector('.ticks'), time: tr.querySelector('.time'), count: 0, last: null };
  }
  const getToken = async () => (await (await fetch('/token')).json()).token;
  const centrifuge = new Centrifuge(ws, { getToken });
  centrifuge.on('connected', () => { state.textContent = 'live'; });
  centrifuge.on('disconnected', (ctx) => { state.textContent = `disconnected (${ctx.code} ${ctx.reason})`; });
  centrifuge.on('connecting', () => { state.textContent = 'connecting…'; });
  for (const s of symbols) {
    const sub = centrifuge.newSubscription(`ticker:${s}`);
    sub.on('publication', (ctx) => {
      const c = cells[s];
      const p = ctx.data.p;
      c.count += 1;
      c.price.textContent = p.toFixed(4);
      c.price.className = `price ${c.last === null || p >= c.last ? 'up' : 'down'}`;
      c.ticks.textContent = String(c.count);
      c.time.textContent = new Date(ctx.data.t).toLocaleTimeString();
      c.last = p;
    });
    sub.subscribe();
  }
  centrifuge.connect();
})();
