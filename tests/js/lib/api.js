'use strict';
// Minimal server HTTP API client (POST /api/<method>, X-API-Key) for driving tests.

async function apiCall(server, method, body = {}, { key = server.apiKey, raw = false } = {}) {
  const res = await fetch(`${server.apiUrl}/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': key },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
  const text = await res.text();
  if (raw) return { status: res.status, text };
  if (res.status !== 200) throw new Error(`api ${method}: HTTP ${res.status}: ${text}`);
  const json = JSON.parse(text);
  if (json.error) {
    const err = new Error(`api ${method}: error ${json.error.code} ${json.error.message}`);
    err.code = json.error.code;
    throw err;
  }
  return json.result;
}

module.exports = { apiCall };
