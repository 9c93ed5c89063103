// lambdaless console: drives the five patterns through the gateway's own
// routes and shows the broker's live events. Hand-written, no dependencies.
// Everything that comes from a message or a response is inserted with
// textContent, never as HTML.
'use strict';

(() => {
  const KEY_STORAGE = 'lambdaless.console.apiKey';
  const FEED_MAX = 50;
  const $ = (id) => document.getElementById(id);
  let apiKey = sessionStorage.getItem(KEY_STORAGE) || '';
  let source = null;
  let healthTimer = null;
  // Tokens of the requests this tab sent, to show their answers.
  const pending = new Map();
  // Answers whose token no request of ours is waiting on (yet): token -> { topic, ev }.
  const early = new Map();

  const QUERIES = [
    ['order 52 with customer and items',
      '{ order(orderId: "52") { orderRef total customer { name } items { quantity product { productName price } } } }'],
    ['orders of customer 4567',
      '{ orders(customerId: "4567") { orderId orderRef total } }'],
    ['customer 4567',
      '{ customer(customerId: "4567") { customerId name email } }'],
    ['product 1',
      '{ product(productId: "1") { productId productName price } }'],
  ];

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function pretty(value) {
    return typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  }

  function show(target, value) {
    target.textContent = pretty(value);
  }

  function prepend(list, node) {
    list.insertBefore(node, list.firstChild);
    while (list.children.length > FEED_MAX) list.removeChild(list.lastChild);
  }

  function time() {
    return new Date().toLocaleTimeString();
  }

  async function api(method, path, body) {
    const headers = { 'x-api-key': apiKey };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const started = performance.now();
    const r = await fetch(path, {
      method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
    return { status: r.status, ok: r.ok, json, text, ms: performance.now() - started };
  }

  function describe(r) {
    return r.status + ' ' + (r.json && r.json.message ? r.json.message : r.text);
  }

  function setLive(text, on) {
    const b = $('live');
    b.textContent = text;
    b.className = 'badge ' + (on ? 'on' : 'off');
  }

  // ---- live events ----------------------------------------------------
  async function openEvents() {
    if (source) { source.close(); source = null; }
    let r;
    try { r = await api('POST', '/console/ticket'); } catch (e) { r = { ok: false, status: 0, text: String(e) }; }
    if (!r.ok) {
      setLive('events: ' + describe(r), false);
      if (r.status !== 401 && r.status !== 403) setTimeout(openEvents, 5000);
      return;
    }
    const es = new EventSource('/console/events?ticket=' + encodeURIComponent(r.json.ticket));
    source = es;
    const broker = (e) => {
      const d = JSON.parse(e.data);
      setLive(d.broker ? 'live' : 'live · waiting for the broker', d.broker);
    };
    es.addEventListener('hello', broker);
    es.addEventListener('broker', broker);
    es.addEventListener('lagged', (e) => {
      const d = JSON.parse(e.data);
      prepend($('responses'), el('li', time() + ' · this tab fell behind and skipped ' + d.missed + ' events', 'warn'));
    });
    es.onmessage = (e) => onEvent(JSON.parse(e.data));
    es.onerror = () => {
      // A ticket is single use: reconnect with a new one.
      if (source !== es) return;
      es.close();
      source = null;
      setLive('reconnecting', false);
      setTimeout(openEvents, 2000);
    };
  }

  function eventItem(ev) {
    const li = el('li');
    li.appendChild(el('span', time() + ' ', 'muted'));
    li.appendChild(el('code', ev.topic));
    li.appendChild(el('pre', pretty(ev.payload) + (ev.truncated ? ' … (' + ev.bytes + ' bytes)' : '')));
    return li;
  }

  function onEvent(ev) {
    const topic = String(ev.topic);
    if (topic.startsWith('notification/')) {
      const li = eventItem(ev);
      li.dataset.thing = topic.slice('notification/'.length);
      prepend($('notifications'), li);
      if (ev.payload && ev.payload.messageId !== undefined && topic.slice(13) === $('thing').value) {
        $('req-message-id').value = String(ev.payload.messageId);
      }
    } else if (topic.startsWith('response/')) {
      prepend($('responses'), eventItem(ev));
      const token = topic.split('/')[2];
      const mine = pending.get(token);
      if (mine) {
        pending.delete(token);
        answered(mine, topic, ev);
      } else {
        // The answer can arrive before the reply to our POST that tells us its
        // token: keep the last few until that reply comes.
        early.set(token, { topic, ev });
        if (early.size > 64) early.delete(early.keys().next().value);
      }
    }
  }

  function answered(mine, topic, ev) {
    const ms = Math.round(performance.now() - mine.started);
    $('device-request').textContent = mine.topic + ' → ' + topic + ' in ' + ms + ' ms';
    show($('device-answer'), ev.payload);
    const p = ev.payload || {};
    const id = mine.op === 'query' ? p.newestMessageId : (mine.op === 'next' ? p.nextMessageId : undefined);
    if (typeof id === 'string') $('req-message-id').value = id;
  }

  // ---- devices --------------------------------------------------------
  $('device-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    let body;
    try { body = JSON.parse($('device-body').value || '{}'); } catch (err) {
      show($('device-sent'), 'not JSON: ' + err.message); return;
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      show($('device-sent'), 'the body must be a JSON object'); return;
    }
    body.thingName = $('thing').value;
    if (body.epochTime === undefined) body.epochTime = String(Date.now());
    const r = await api('POST', '/console/devices/messages', body);
    show($('device-sent'), r.ok ? r.status + ' queued as ' + r.json.messageId + '\n' + pretty(body) : describe(r));
  });

  for (const button of document.querySelectorAll('#request-form button[data-op]')) {
    button.addEventListener('click', async () => {
      const op = button.dataset.op;
      const req = { op, uuid: $('thing').value };
      if (op !== 'query') req.messageId = $('req-message-id').value;
      $('device-answer').textContent = '';
      const r = await api('POST', '/console/devices/requests', req);
      if (!r.ok) { $('device-request').textContent = describe(r); return; }
      const mine = { op, topic: r.json.topic, started: performance.now() - r.ms };
      const already = early.get(r.json.token);
      if (already) {
        early.delete(r.json.token);
        answered(mine, already.topic, already.ev);
        return;
      }
      pending.set(r.json.token, mine);
      $('device-request').textContent = r.json.topic + ' sent; waiting on ' + r.json.responseTopic;
    });
  }

  // ---- users ----------------------------------------------------------
  $('user-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const log = $('user-log');
    $('user-result').textContent = '';
    const r = await api('POST', '/users', { name: $('user-name').value, email: $('user-email').value });
    if (r.status !== 202) { log.textContent = 'POST /users → ' + describe(r); return; }
    const id = r.json.messageId;
    log.textContent = 'POST /users → 202, messageId ' + id + '\n';
    for (let attempt = 1; attempt <= 120; attempt++) {
      const s = await api('GET', '/status/' + encodeURIComponent(id));
      if (s.ok) {
        log.textContent += 'GET /status/' + id + ' → 200 after ' + attempt + ' polls, userId ' + s.json.userId + '\n';
        const u = await api('GET', '/users/' + encodeURIComponent(s.json.userId));
        log.textContent += 'GET /users/' + s.json.userId + ' → ' + u.status;
        show($('user-result'), u.json || u.text);
        return;
      }
      if (s.status !== 404) { log.textContent += 'GET /status → ' + describe(s); return; }
      await new Promise((done) => setTimeout(done, 500));
    }
    log.textContent += 'still not created after 60 s';
  });

  // ---- orders ---------------------------------------------------------
  for (const [label, query] of QUERIES) {
    const o = el('option', label);
    o.value = query;
    $('gql-query').appendChild(o);
  }
  const showQuery = () => { $('gql-text').textContent = $('gql-query').value; };
  $('gql-query').addEventListener('change', showQuery);
  showQuery();
  $('gql-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await api('POST', '/graphql', { query: $('gql-query').value });
    show($('gql-result'), r.json ? r.json : describe(r));
    $('gql-result').dataset.ms = String(Math.round(r.ms));
  });

  // ---- fetch ----------------------------------------------------------
  $('fetch-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('fetch-time').textContent = '…';
    const r = await api('GET', '/fetch/' + encodeURIComponent($('fetch-id').value));
    $('fetch-time').textContent = Math.round(r.ms) + ' ms';
    show($('fetch-result'), r.ok ? r.json : describe(r));
  });

  // ---- stream ---------------------------------------------------------
  $('stream-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const table = $('stream-table').value;
    const list = $('stream-items');
    list.textContent = '';
    $('stream-count').textContent = '0';
    $('stream-first').textContent = '–';
    $('stream-state').textContent = 'streaming ' + table;
    const started = performance.now();
    let count = 0;
    let rest = '';
    const line = (text) => {
      if (!text.trim()) return;
      count++;
      if (count === 1) $('stream-first').textContent = Math.round(performance.now() - started) + ' ms';
      if (count <= 20) list.appendChild(el('li', text));
    };
    try {
      const r = await fetch('/console/stream/' + encodeURIComponent(table), { headers: { 'x-api-key': apiKey }, cache: 'no-store' });
      if (!r.ok) { $('stream-state').textContent = r.status + ' ' + await r.text(); return; }
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        rest += decoder.decode(value, { stream: true });
        const lines = rest.split('\n');
        rest = lines.pop();
        lines.forEach(line);
        $('stream-count').textContent = String(count);
      }
      line(rest);
      $('stream-count').textContent = String(count);
      const secs = (performance.now() - started) / 1000;
      $('stream-state').textContent = 'done: ' + count + ' items in ' + secs.toFixed(2) + ' s';
    } catch (err) {
      $('stream-state').textContent = 'failed: ' + err.message;
    }
  });

  // ---- health ---------------------------------------------------------
  async function refreshHealth() {
    let r;
    try { r = await api('GET', '/console/health'); } catch (_) { return; }
    const rows = $('health-rows');
    if (!r.ok) { rows.textContent = ''; rows.appendChild(el('tr')).appendChild(el('td', describe(r))); return; }
    rows.textContent = '';
    for (const s of r.json.services) {
      const tr = el('tr');
      tr.dataset.service = s.name;
      tr.appendChild(el('td', s.name));
      tr.appendChild(el('td', s.state, s.state === 'ready' ? 'ok' : 'bad'));
      const checks = s.checks && typeof s.checks === 'object'
        ? Object.entries(s.checks).map(([k, v]) => k + ': ' + (typeof v === 'string' ? v : JSON.stringify(v))).join(', ')
        : '';
      tr.appendChild(el('td', checks));
      const metrics = Object.entries(s.metrics || {}).map(([k, v]) => k + ' ' + v).join('\n');
      tr.appendChild(el('td', metrics, 'metrics'));
      rows.appendChild(tr);
    }
  }

  // ---- the key --------------------------------------------------------
  function start() {
    openEvents();
    refreshHealth();
    if (healthTimer) clearInterval(healthTimer);
    healthTimer = setInterval(refreshHealth, 3000);
  }

  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    apiKey = $('api-key').value.trim();
    sessionStorage.setItem(KEY_STORAGE, apiKey);
    start();
  });

  if (apiKey) {
    $('api-key').value = apiKey;
    start();
  }
})();
