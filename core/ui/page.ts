/**
 * The dashboard's page, served as it is (no build step, no library, nothing from the network):
 * it draws the supervisor's picture of the fleet from /api/state and every server-sent event
 * after it, and sends each button's action as a POST. Text goes into the page as text, never as
 * markup.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vai-mcp</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>vai-mcp</h1>
  <span id="summary">loading...</span>
  <span id="live" class="live off">connecting</span>
</header>
<div id="message" role="status" hidden></div>
<main>
  <section aria-labelledby="boxes-title">
    <h2 id="boxes-title">Boxes</h2>
    <div id="boxes"></div>
  </section>
  <section aria-labelledby="jobs-title">
    <h2 id="jobs-title">Jobs</h2>
    <div id="jobs"></div>
  </section>
</main>
</body>
</html>
`;

export const PAGE_CSS = `
:root { color-scheme: light dark; --line: #8884; --muted: #888; --ok: #2a8a3a; --warn: #b8860b; --bad: #c0392b; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; }
header { display: flex; gap: 1em; align-items: baseline; padding: .6em 1em; border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.2em; margin: 0; }
#summary { color: var(--muted); flex: 1; }
.live { font-size: .85em; padding: 0 .5em; border-radius: 1em; border: 1px solid var(--ok); color: var(--ok); }
.live.off { border-color: var(--warn); color: var(--warn); }
main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 1em; padding: 1em; }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } }
h2 { font-size: 1em; margin: 0 0 .5em; }
article { border: 1px solid var(--line); border-radius: 6px; padding: .6em .8em; margin-bottom: .8em; }
article h3 { font-size: 1em; margin: 0 0 .3em; display: flex; gap: .6em; align-items: baseline; }
.status, .state { font-size: .8em; padding: 0 .45em; border-radius: 1em; border: 1px solid var(--line); font-weight: normal; }
.status-ready, .state-up, .status-succeeded { color: var(--ok); border-color: var(--ok); }
.status-failed, .state-failed, .state-port_conflict, .status-cancelled { color: var(--bad); border-color: var(--bad); }
.status-stopped, .state-closed, .state-stopped { color: var(--muted); }
.meta, .traffic, .note { color: var(--muted); margin: .2em 0; }
.status-message { margin: .2em 0; }
ul.apps { list-style: none; padding: 0; margin: .3em 0; }
ul.apps li { display: flex; gap: .6em; align-items: baseline; }
.actions { display: flex; flex-wrap: wrap; gap: .4em; margin-top: .4em; }
button { font: inherit; padding: .15em .7em; border-radius: 4px; border: 1px solid var(--line); background: transparent; cursor: pointer; }
button.danger { color: var(--bad); border-color: var(--bad); }
button:disabled { opacity: .5; cursor: default; }
progress { width: 100%; }
.thumbs { display: flex; flex-wrap: wrap; gap: .4em; margin-top: .3em; }
.thumbs img { width: 96px; height: 96px; object-fit: cover; border-radius: 4px; border: 1px solid var(--line); }
#message { margin: .6em 1em 0; padding: .4em .7em; border-radius: 4px; border: 1px solid var(--line); }
#message.error { border-color: var(--bad); color: var(--bad); }
.empty { color: var(--muted); }
`;

export const PAGE_JS = `'use strict';
const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('data-')) el.setAttribute(k, v);
    else if (k in el) el[k] = v;
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

function money(v) { return v === null || v === undefined ? '-' : '$' + v.toFixed(v < 10 ? 3 : 2); }
function bytes(n) {
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
  if (n < 1073741824) return (n / 1048576).toFixed(1) + ' MiB';
  return (n / 1073741824).toFixed(2) + ' GiB';
}
function duration(s) {
  if (s < 60) return Math.round(s) + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm';
  return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
}
function clock(iso) { return iso ? new Date(iso).toLocaleTimeString() : '-'; }

const LIVE = ['provisioning', 'loading', 'running', 'ready'];

function boxCard(b) {
  const t = b.tunnel;
  const apps = t ? Object.entries(t.apps) : [];
  const meta = [b.provider, b.dph_total === null ? 'no price' : money(b.dph_total) + '/h', 'cost ' + money(b.cost_so_far)];
  if (b.idle_s !== null) meta.push('idle ' + duration(b.idle_s) + (b.idle_action_at ? ', idle action at ' + clock(b.idle_action_at) : ''));
  const live = LIVE.includes(b.status);
  return h('article', { class: 'box', 'data-instance': b.instance_id },
    h('h3', {}, h('span', { class: 'name' }, b.instance_id), h('span', { class: 'status status-' + b.status }, b.status)),
    h('p', { class: 'meta' }, meta.join(' · ')),
    b.status_message ? h('p', { class: 'status-message' }, b.status_message) : null,
    apps.length
      ? h('ul', { class: 'apps' }, apps.map(([name, a]) => h('li', { 'data-app': name },
          h('a', { class: 'app-link', href: a.url, target: '_blank', rel: 'noopener noreferrer' }, name),
          h('span', { class: 'url' }, a.url),
          h('span', { class: 'state state-' + a.state }, a.state),
          name === 'comfyui' ? null : h('button', { 'data-action': 'close_tunnel', 'data-app': name, title: 'Close this app\\'s port' }, 'close'))))
      : h('p', { class: 'note' }, live ? 'no tunnel open' : ''),
    t ? h('p', { class: 'traffic' }, 'tunnel ' + t.state + ' · ' + bytes(t.bytes_in) + ' in · ' + bytes(t.bytes_out) + ' out · ' + t.connections + ' open · ' + t.requests_refused + ' refused' + (t.state !== 'up' && t.last_error ? ' · ' + t.last_error : '')) : null,
    h('div', { class: 'actions' },
      h('button', { 'data-action': 'open_tunnel', disabled: !live }, t ? 'Reopen tunnel' : 'Open tunnel'),
      h('button', { 'data-action': 'close_tunnel', disabled: !t }, 'Close tunnel'),
      h('button', { 'data-action': 'stop', disabled: !live }, 'Stop'),
      h('button', { 'data-action': 'start', disabled: b.status !== 'stopped' }, 'Start'),
      h('button', { 'data-action': 'destroy', class: 'danger' }, 'Destroy')));
}

const IMAGE = /\\.(png|jpe?g|webp|gif)$/i;
const ENDED = ['succeeded', 'failed', 'cancelled'];

function overall(j) {
  if (j.status === 'succeeded') return 100;
  if (!j.node_count || !j.node_index) return null;
  return Math.round(((j.node_index - 1) + (j.percent || 0) / 100) / j.node_count * 100);
}

function jobCard(j) {
  const p = overall(j);
  return h('article', { class: 'job', 'data-job': j.job_id },
    h('h3', {}, h('span', { class: 'name' }, j.job_id), h('span', {}, 'on ' + j.instance_id), h('span', { class: 'status status-' + j.status }, j.status)),
    h('progress', { max: 100, value: p === null ? 0 : p }),
    h('p', { class: 'progress-text' }, (p === null ? '' : p + '% · ') + (j.error || j.progress || (j.kind === 'prepare' ? 'preparing the box' : j.workflow_file || ''))),
    h('p', { class: 'meta' }, 'started ' + clock(j.created_at) + (j.finished_at ? ' · ended ' + clock(j.finished_at) : '') + (j.cost_usd !== null ? ' · ' + money(j.cost_usd) : '')),
    j.outputs.length ? h('div', { class: 'thumbs' }, j.outputs.map((f, i) => IMAGE.test(f)
      ? h('a', { href: '/api/output?job=' + encodeURIComponent(j.job_id) + '&n=' + i, target: '_blank' }, h('img', { class: 'thumb', src: '/api/output?job=' + encodeURIComponent(j.job_id) + '&n=' + i, alt: f.split('/').pop(), title: f }))
      : h('span', { class: 'note' }, f.split('/').pop()))) : null,
    ENDED.includes(j.status) ? null : h('div', { class: 'actions' }, h('button', { 'data-action': 'cancel_job' }, 'Cancel')));
}

function render(state) {
  const boxes = state.instances;
  const ready = boxes.filter((b) => b.status === 'ready').length;
  const burn = boxes.reduce((n, b) => n + (LIVE.includes(b.status) && b.dph_total ? b.dph_total : 0), 0);
  const spent = boxes.reduce((n, b) => n + (b.cost_so_far || 0), 0);
  const running = state.jobs.filter((j) => !ENDED.includes(j.status)).length;
  $('summary').textContent = boxes.length + ' box' + (boxes.length === 1 ? '' : 'es') + ', ' + ready + ' ready · ' + money(burn) + '/h · ' + money(spent) + ' so far · ' + running + ' job' + (running === 1 ? '' : 's') + ' running · updated ' + clock(state.at);
  $('boxes').replaceChildren(...(boxes.length ? boxes.map(boxCard) : [h('p', { class: 'empty' }, 'No boxes. Create one: vai-mcp-cli create examples/local.json')]));
  $('jobs').replaceChildren(...(state.jobs.length ? state.jobs.map(jobCard) : [h('p', { class: 'empty' }, 'No jobs yet.')]));
}

function say(text, isError) {
  const m = $('message');
  m.hidden = false;
  m.textContent = text;
  m.className = isError ? 'error' : '';
}

const DONE = { open_tunnel: 'Tunnel open', close_tunnel: 'Closed', stop: 'Stopped', start: 'Starting', destroy: 'Destroyed', cancel_job: 'Cancelled' };

async function act(button) {
  const box = button.closest('[data-instance]');
  const job = button.closest('[data-job]');
  const body = { action: button.dataset.action, instance_id: box ? box.dataset.instance : undefined, job_id: job ? job.dataset.job : undefined, app: button.dataset.app };
  if (body.action === 'destroy') {
    if (!confirm('Destroy ' + body.instance_id + '? The box and everything on it end for good.')) return;
    body.confirm = true;
  }
  button.disabled = true;
  try {
    const res = await fetch('/api/action', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const out = await res.json();
    if (out.ok) say(DONE[body.action] + ': ' + (body.instance_id || body.job_id) + (body.app ? ' (' + body.app + ')' : ''), false);
    else say(out.error, true);
  } catch (err) {
    say('The supervisor did not answer: ' + err.message, true);
  } finally {
    button.disabled = false;
  }
}

document.addEventListener('click', (e) => {
  const button = e.target.closest('button[data-action]');
  if (button) act(button);
});

function connect() {
  const events = new EventSource('/api/events');
  events.onopen = () => { $('live').textContent = 'live'; $('live').className = 'live'; };
  events.onmessage = (e) => render(JSON.parse(e.data));
  events.onerror = () => { $('live').textContent = 'reconnecting'; $('live').className = 'live off'; };
}

fetch('/api/state').then((r) => r.json()).then(render).catch(() => say('Could not load the state.', true));
connect();
`;
