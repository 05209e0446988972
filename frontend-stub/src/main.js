// The Cruddur stub: home feed, notifications, a user's feed, posting a crud
// with a TTL, and replies, against BACKEND_URL's API.
import { BACKEND_URL, flush, tracer } from './tracing.js';

const feed = document.getElementById('feed');
const title = document.getElementById('title');
const status = document.getElementById('status');

async function api(path, body) {
  const init = body === undefined
    ? {}
    : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  const answer = await fetch(`${BACKEND_URL}${path}`, init);
  const data = await answer.json();
  if (answer.status !== 200) {
    throw new Error(Array.isArray(data) ? data.join(', ') : data.message || `HTTP ${answer.status}`);
  }
  return data;
}

/** Runs `work` in a span of its own, so the fetch it starts is its child. */
function traced(name, attributes, work) {
  return tracer.startActiveSpan(name, { attributes }, (span) =>
    work().finally(() => span.end()));
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderReply(reply) {
  const node = element('div', 'reply', `@${reply.handle}: ${reply.message}`);
  node.dataset.uuid = reply.uuid;
  return node;
}

function renderActivity(activity) {
  const article = element('article', 'crud');
  article.dataset.uuid = activity.uuid;
  const who = element('div', 'who');
  const link = element('a', '', `@${activity.handle}`);
  link.href = `#/@${activity.handle}`;
  who.append(`${activity.display_name} `, link, ` · expires ${new Date(activity.expires_at).toLocaleString()}`);
  const replies = element('div', 'replies');
  for (const reply of activity.replies || []) replies.append(renderReply(reply));
  const form = element('form', 'reply-form');
  const input = element('input');
  input.name = 'message';
  input.placeholder = 'Reply';
  input.required = true;
  form.append(input, element('button', '', 'Reply'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const message = input.value;
    traced('reply', { 'app.activity_uuid': activity.uuid }, () =>
      api(`/api/activities/${activity.uuid}/reply`, { message }))
      .then((reply) => {
        replies.append(renderReply(reply));
        input.value = '';
        status.textContent = '';
      })
      .catch((err) => { status.textContent = `Reply failed: ${err.message}`; });
  });
  article.append(who, element('p', 'message', activity.message), replies, form);
  return article;
}

function route() {
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
  if (hash === 'notifications') return { name: 'Notifications', path: '/api/activities/notifications' };
  if (hash.startsWith('@')) return { name: hash, path: `/api/activities/@${encodeURIComponent(hash.slice(1))}` };
  return { name: 'Home', path: '/api/activities/home' };
}

function show() {
  const { name, path } = route();
  title.textContent = name;
  feed.replaceChildren();
  traced('load feed', { 'app.feed': name }, () => api(path))
    .then((activities) => {
      feed.replaceChildren(...activities.map(renderActivity));
      if (activities.length === 0) feed.append(element('p', '', 'Nothing here yet.'));
      feed.dataset.loaded = name;
      status.textContent = '';
    })
    .catch((err) => { status.textContent = `Could not load ${name}: ${err.message}`; });
}

document.getElementById('crud-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.target;
  const message = form.message.value;
  const ttl = form.ttl.value;
  traced('post crud', { 'app.ttl': ttl }, () => api('/api/activities', { message, ttl }))
    .then((activity) => {
      if (route().name === 'Home') feed.prepend(renderActivity(activity));
      form.message.value = '';
      status.textContent = '';
    })
    .catch((err) => { status.textContent = `Crud failed: ${err.message}`; });
});

addEventListener('hashchange', show);
window.cruddurFlushTraces = flush;
show();
