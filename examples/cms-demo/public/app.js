// The demo page: a Projects overview and a Notifications panel kept live by herald.
// The pattern: load the state with the channel's position, subscribe `since` that position,
// apply updates idempotently, and reload the state when herald says `resync`.
import { connect } from '/herald/client.js';

const $ = (id) => document.getElementById(id);
const projects = new Map();       // id -> project
const notifications = new Map();  // id -> notification
let unread = 0;

// Exposed for the browser tests and for curious editors (window.demo in the console).
const demo = (window.demo = { updates: 0, resyncs: 0, state: 'connecting', transport: null, reason: null, explanation: null, herald: null });

async function getJSON(url) {
  const res = await fetch(url, { credentials: 'same-origin' });
  if (!res.ok) throw Object.assign(new Error(`${url}: ${res.status}`), { status: res.status });
  return res.json();
}

async function main() {
  let me;
  try {
    me = await getJSON('/api/me');
  } catch (e) {
    if (e.status !== 401) throw e;
    showLogin(['alice', 'bob']);
    return;
  }
  $('whoami').innerHTML = `Signed in as <b>${me.user}</b> · ${me.users.filter((u) => u !== me.user)
    .map((u) => `<a href="/login?user=${u}">switch to ${u}</a>`).join(' ')} · <a href="/logout">sign out</a>`;
  $('app').hidden = false;

  // herald knows the editor by a short-lived token from the CMS; signed out, there is none,
  // and the session ends when the last one expires.
  const herald = (demo.herald = connect({
    accessToken: async () => {
      const res = await fetch('/api/herald-token', { method: 'POST', credentials: 'same-origin' });
      return res.ok ? (await res.json()).token : null;
    },
  }));
  herald.on('state', showConnection);

  const [p, n] = await Promise.all([getJSON('/api/projects'), getJSON('/api/notifications')]);
  loadProjects(p.projects);
  loadNotifications(n.notifications);

  const mine = `user.${me.user}.notifications`;
  const channels = {
    projects: reloader('/api/projects', (s) => loadProjects(s.projects), onProjectUpdate),
    [mine]: reloader('/api/notifications', (s) => loadNotifications(s.notifications), onNotification),
  };
  herald.subscribe('projects', channels.projects.apply, { since: p.position });
  herald.subscribe(mine, channels[mine].apply, { since: n.position });
  herald.on('resync', async ({ channel }) => {
    // herald could not replay what was missed (server restarted, history too short): reload.
    await channels[channel]?.reload();
    demo.resyncs++;
  });
  herald.on('error', (e) => console.warn('herald:', e));

  // Who else looks at each project (herald.v2 presence): `project.<id>` carries nothing but
  // its members; herald.js reads them after each (re)subscribe and tells joins and leaves.
  demo.me = me.user;
  const projectOf = (channel) => (/^project\.(\d+)$/.exec(channel) || [])[1];
  const changed = (channel, f) => {
    const id = projectOf(channel);
    if (id === undefined) return;
    const members = (here[id] ??= new Map());
    f(members);
    renderHere(id);
  };
  herald.on('presence', ({ channel, members }) => changed(channel, (m) => {
    m.clear();
    for (const x of members) m.set(x.user, x.info);
  }));
  herald.on('join', ({ channel, user, info }) => changed(channel, (m) => m.set(user, info)));
  herald.on('leave', ({ channel, user }) => changed(channel, (m) => m.delete(user)));
  for (const id of projects.keys()) {
    herald.subscribe(`project.${id}`, () => {});
    // On long-poll there is no presence ('unsupported'): the line stays empty.
    herald.presence(`project.${id}`).catch((e) => e.code === 'unsupported' || console.warn('herald presence:', e.code));
  }
}

// project id -> Map(user -> info), from herald's presence; exposed for the browser tests.
const here = (demo.here = {});

function renderHere(id) {
  const el = $(`here-${id}`);
  if (!el) return;
  const others = [...(here[id]?.entries() ?? [])].filter(([user]) => user !== demo.me)
    .map(([user, info]) => info?.name || user).sort();
  el.textContent = others.length ? `also here: ${others.join(', ')}` : '';
  el.hidden = others.length === 0;
}

function showLogin(users) {
  $('login').hidden = false;
  $('login-users').innerHTML = users.map((u) => `<a href="/login?user=${u}">${u}</a>`).join('');
  $('connection').hidden = true;
}

const stateText = {
  connecting: 'Connecting…',
  open: 'Live',
  reconnecting: 'Reconnecting…',
  warning: 'Connection problems — retrying',
  offline: 'Offline — reload the page',
  expired: 'Signed out — sign in again for live updates',
};

function showConnection({ state, transport, reason, explanation, attempt }) {
  Object.assign(demo, { state, transport, reason, explanation });
  const el = $('connection');
  el.dataset.state = state;
  const via = transport === 'longpoll' ? 'Long-poll' : transport === 'websocket' ? 'WebSocket' : '';
  let text = stateText[state] || state;
  if (state === 'open' && via) text = `${text} · ${via}${explanation ? ` — ${explanation}` : ''}`;
  if ((state === 'reconnecting' || state === 'warning') && attempt) text += ` (attempt ${attempt})`;
  $('connection-text').textContent = text;
  el.title = reason ? `${text}\n${reason}` : text;
  if (state === 'expired') $('whoami').innerHTML = 'Signed out · <a href="/">sign in again</a>';
}

// A channel's state, reloaded after a resync. Updates that arrive while the reload is on its
// way are applied again on top of it when the reloaded state does not include them yet (newer
// than its position): a reload never undoes a live update.
function reloader(url, load, apply) {
  let during = null;  // updates since the reload began
  return {
    apply(data, meta) {
      during?.push([data, meta]);
      apply(data, meta);
    },
    async reload() {
      const missed = (during = []);
      let state;
      try {
        state = await getJSON(url);
      } finally {
        during = null;
      }
      load(state);
      const at = state.position;
      for (const [data, meta] of missed) if (meta.epoch !== at.epoch || meta.offset > at.offset) apply(data, meta);
    },
  };
}

function loadProjects(list) {
  projects.clear();
  for (const p of list) projects.set(p.id, p);
  renderProjects();
}

function loadNotifications(list) {
  notifications.clear();
  for (const n of list) notifications.set(n.id, n);
  renderNotifications();
}

function onProjectUpdate(update) {
  demo.updates++;
  $('last-event').textContent = `Last update ${new Date().toLocaleTimeString()}`;
  const p = projects.get(update.project);
  if (!p) return;
  if (update.kind === 'item') {
    const i = p.items.findIndex((x) => x.id === update.item.id);
    if (i >= 0) p.items[i] = update.item; else p.items.push(update.item);
    renderProjects(`item-${p.id}-${update.item.id}`);
  } else if (update.kind === 'comment') {
    if (!p.comments.some((c) => c.id === update.id)) p.comments.push(update);
    p.comments = p.comments.slice(-20);
    renderProjects(`comments-${p.id}`);
  }
}

function onNotification(n) {
  demo.updates++;
  if (!notifications.has(n.id)) unread++;
  notifications.set(n.id, n);
  renderNotifications(n.id);
}

const nextStatus = { draft: 'in review', 'in review': 'approved', approved: 'published', published: 'draft' };

function renderProjects(flashId) {
  const html = [];
  for (const p of projects.values()) {
    html.push(`<div class="project" data-project="${p.id}"><h3>${esc(p.name)}</h3>
      <p class="here" id="here-${p.id}" hidden></p><table>`);
    for (const i of p.items) {
      html.push(`<tr id="item-${p.id}-${i.id}"><td>${esc(i.title)}</td>
        <td><span class="status" data-status="${esc(i.status)}">${esc(i.status)}</span></td>
        <td class="editor">${esc(i.editor)}</td>
        <td class="action"><button data-project="${p.id}" data-item="${i.id}" data-next="${nextStatus[i.status] || 'draft'}">→ ${nextStatus[i.status] || 'draft'}</button></td></tr>`);
    }
    html.push(`</table><ul class="comments" id="comments-${p.id}">`);
    for (const c of p.comments.slice(-3)) html.push(`<li><b>${esc(c.author)}</b>: ${esc(c.text)}</li>`);
    html.push('</ul></div>');
  }
  $('projects').innerHTML = html.join('');
  for (const p of projects.values()) renderHere(p.id);
  if (flashId) $(flashId)?.classList.add('flash');
}

function renderNotifications(flashId) {
  const list = [...notifications.values()].sort((a, b) => b.id - a.id).slice(0, 50);
  $('notifications').innerHTML = list
    .map((n) => `<li id="note-${n.id}">${esc(n.text)}<time>${new Date(n.at).toLocaleTimeString()}</time></li>`).join('');
  $('unread').hidden = unread === 0;
  $('unread').textContent = String(unread);
  if (flashId) $(`note-${flashId}`)?.classList.add('flash');
}

$('projects').addEventListener('click', async (e) => {
  const b = e.target.closest('button[data-item]');
  if (!b) return;
  await fetch('/api/status', {
    method: 'POST',
    credentials: 'same-origin',
    body: JSON.stringify({ project: Number(b.dataset.project), item: Number(b.dataset.item), status: b.dataset.next }),
  });  // the change comes back through herald, like everybody else's
});

$('notifications').addEventListener('click', () => { unread = 0; renderNotifications(); });

$('diagnose-button').addEventListener('click', async () => {
  const pre = $('diagnose');
  pre.hidden = !pre.hidden;
  if (!pre.hidden) pre.textContent = JSON.stringify({ client: { state: demo.state, transport: demo.transport, reason: demo.reason }, server: await getJSON('/herald/diagnose') }, null, 2);
});

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

main().catch((e) => { console.error(e); $('last-event').textContent = `Error: ${e.message}`; });
