// The trace explorer's page: a list of the buffered traces, one trace as a
// waterfall and a query view over the buffered spans, all from the JSON API
// next to this file (api/traces, api/traces/{id}, api/query). Plain ES2020,
// no libraries, no build step; every piece of data is written as text.
'use strict';

const SVG_NS = 'http://www.w3.org/2000/svg';
const view = document.getElementById('view');
const errorBox = document.getElementById('error');
const KINDS = ['server', 'client', 'internal', 'producer', 'consumer'];
const CALCS = ['count', 'p50', 'p90', 'p99', 'max'];
const TRACE_FILTERS = ['route', 'status', 'min_duration_ms', 'attribute', 'equals', 'limit'];
const QUERY_FIELDS = ['calc', 'of', 'group_by', 'attribute', 'equals', 'kind', 'buckets'];
const PALETTE = ['#2563eb', '#d97706', '#059669', '#dc2626', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#9a3412', '#475569'];
let generation = 0;
let noticeShown = false;

// ---- DOM helpers -----------------------------------------------------------

function build(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child != null && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
const el = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
const svg = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);

function field(label, control) {
  return el('label', { class: 'field' }, el('span', { text: label }), control);
}

function selectOf(name, options, value) {
  const select = el('select', { name }, options.map(([v, text]) => el('option', { value: v, text })));
  select.value = value || '';
  return select;
}

// ---- Formatting ------------------------------------------------------------

function fmtMs(ms) {
  if (ms == null || !Number.isFinite(ms)) return '—';
  if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 10000 ? 1 : 2)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  if (ms >= 1) return `${ms.toFixed(2)} ms`;
  return `${ms.toFixed(3)} ms`;
}

function fmtNumber(v) {
  if (v == null) return '—';
  return typeof v === 'number' ? v.toLocaleString('en-US', { maximumFractionDigits: 3 }) : String(v);
}

// A value in the unit of the query: milliseconds for durations, counts as integers.
function fmtValue(v, of, calc) {
  if (v == null) return '—';
  if (calc === 'count' || of !== 'duration_ms') return fmtNumber(v);
  return fmtMs(v);
}

// "2026-12-06T02:03:04.123456Z" -> "2026-12-06 02:03:04.123Z"
function fmtStart(text) {
  return String(text || '').replace('T', ' ').replace(/(\.\d{3})\d*(Z|[+-]\d\d:\d\d)$/, '$1$2');
}

function fmtClock(unixMs, withMs) {
  const d = new Date(unixMs);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().slice(11, withMs ? 23 : 19);
}

function fmtAttr(value) {
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

// Round numbers for an axis: 0, step, 2 step, ... up to at least max.
function ticks(max, count) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const f = raw / power;
  const step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
  const out = [];
  for (let i = 0; out.length === 0 || out[out.length - 1] < max * 0.999999; i += 1) out.push(+(i * step).toPrecision(12));
  return out;
}

function tickLabel(v, step, unit) {
  const digits = Math.max(0, Math.min(6, -Math.floor(Math.log10(step || 1))));
  return `${v.toFixed(digits)}${unit}`;
}

// A label on a value axis whose labels are step apart.
function axisValue(v, step, of, calc) {
  if (calc === 'count') return fmtNumber(v);
  return tickLabel(v, step, of === 'duration_ms' ? ' ms' : '');
}

// ---- API -------------------------------------------------------------------

function pick(params, names) {
  const out = new URLSearchParams();
  for (const name of names) {
    const value = (params.get(name) || '').trim();
    if (value) out.set(name, value);
  }
  return out;
}

async function api(path, params) {
  const qs = params ? params.toString() : '';
  const url = `api/${path}${qs ? `?${qs}` : ''}`;
  let answer;
  try {
    answer = await fetch(url, { headers: { accept: 'application/json' } });
  } catch (err) {
    throw new Error(`Could not reach the server (${err.message}).`);
  }
  let body = null;
  try { body = await answer.json(); } catch { body = null; }
  if (!answer.ok) {
    const kind = body && body.error ? body.error : answer.statusText || 'error';
    const message = body && body.message ? body.message : `the server answered ${url} with HTTP ${answer.status}`;
    throw new Error(`${answer.status} ${kind}: ${message}`);
  }
  if (body == null) throw new Error(`The answer to ${url} is not JSON.`);
  return body;
}

function showError(message) {
  errorBox.hidden = !message;
  errorBox.textContent = message ? `Error: ${message}` : '';
}

function showNotice(data) {
  if (data && data.notice) {
    document.getElementById('notice').textContent = data.notice;
    noticeShown = true;
  }
}

// ---- Routing ---------------------------------------------------------------

function parseHash() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const at = hash.indexOf('?');
  return { path: at < 0 ? hash : hash.slice(0, at), params: new URLSearchParams(at < 0 ? '' : hash.slice(at + 1)) };
}

// Go to a hash; the same hash again (a re-submitted form) renders again.
function navigate(hash) {
  view.dataset.loaded = 'false';
  if (location.hash === hash) route();
  else location.hash = hash;
}

// What had the focus inside the view, to give it back after a re-render.
function focusKey() {
  const active = document.activeElement;
  if (!active || !view.contains(active) || active === view) return null;
  if (active.id) return `#${active.id}`;
  if (active.form && active.form.id) {
    if (active.name) return `#${active.form.id} [name="${active.name}"]`;
    if (active.type === 'submit') return `#${active.form.id} [type="submit"]`;
  }
  return null;
}

async function route() {
  const gen = ++generation;
  const stale = () => gen !== generation;
  const { path, params } = parseHash();
  const traceMatch = path.match(/^\/trace\/([^/]+)\/?$/);
  const name = traceMatch ? 'trace' : path === '/query' ? 'query' : 'traces';
  const sameView = view.dataset.view === name;
  const refocus = sameView ? focusKey() : null;
  view.dataset.view = name;
  view.dataset.loaded = 'false';
  view.setAttribute('aria-busy', 'true');
  showError(null);
  for (const link of document.querySelectorAll('nav a')) {
    if (link.id === `nav-${name === 'trace' ? 'traces' : name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  try {
    if (name === 'trace') await traceView(decodeURIComponent(traceMatch[1]), stale);
    else if (name === 'query') await queryView(params, stale, refocus);
    else await tracesView(params, stale, refocus);
    if (stale()) return;
    view.dataset.loaded = 'true';
  } catch (err) {
    if (stale()) return;
    showError(err && err.message ? err.message : String(err));
    for (const placeholder of view.querySelectorAll('.loading')) placeholder.remove();
    view.dataset.loaded = 'error';
  }
  view.removeAttribute('aria-busy');
  if (!sameView) {
    window.scrollTo(0, 0);
    const heading = view.querySelector('h2');
    if (heading) heading.focus({ preventScroll: true });
  }
  if (!noticeShown) api('traces', new URLSearchParams({ limit: '1' })).then(showNotice, () => {});
}

// ---- The trace list --------------------------------------------------------

function statusClass(t) {
  if (t.status === 'error') return 'bad';
  const code = t.status_code;
  if (code >= 500) return 'bad';
  if (code >= 400) return 'warn';
  return 'good';
}

async function tracesView(params, stale, refocus) {
  const value = (name) => params.get(name) || '';
  const routeSelect = selectOf('route', [['', 'any'], ...(value('route') ? [[value('route'), value('route')]] : [])], value('route'));
  const form = el('form', { id: 'filters', class: 'toolbar', 'aria-label': 'Filter traces' },
    field('Route', routeSelect),
    field('Status', selectOf('status', [['', 'any'], ['2xx', '2xx'], ['3xx', '3xx'], ['4xx', '4xx'], ['5xx', '5xx'], ['error', 'error (any span)']], value('status'))),
    field('Min duration (ms)', el('input', { name: 'min_duration_ms', type: 'number', min: 0, step: 'any', value: value('min_duration_ms'), placeholder: '0' })),
    field('Attribute', el('input', { name: 'attribute', type: 'text', list: 'attribute-keys', spellcheck: 'false', value: value('attribute'), placeholder: 'app.result_length' })),
    field('equals', el('input', { name: 'equals', type: 'text', spellcheck: 'false', value: value('equals'), placeholder: '(any value: exists)' })),
    el('div', { class: 'buttons' },
      el('button', { type: 'submit', text: 'Filter' }),
      el('button', { type: 'button', id: 'refresh', text: 'Refresh', onclick: () => navigate(location.hash || '#/') }),
      el('a', { href: '#/', class: 'clear', text: 'Clear' })));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const qs = pick(new URLSearchParams(new FormData(form)), TRACE_FILTERS);
    if (params.get('limit')) qs.set('limit', params.get('limit'));
    navigate(`#/${qs.toString() ? `?${qs}` : ''}`);
  });
  const summary = el('p', { id: 'buffered', class: 'summary loading', text: 'Loading traces…' });
  const results = el('div', { class: 'results' });
  view.replaceChildren(el('h2', { tabindex: -1, text: 'Recent traces' }), form, summary, results);
  if (refocus) { const target = view.querySelector(refocus); if (target) target.focus(); }

  const data = await api('traces', pick(params, TRACE_FILTERS));
  if (stale()) return;
  showNotice(data);
  for (const r of data.routes || []) {
    if (r !== value('route')) routeSelect.append(el('option', { value: r, text: r }));
  }
  routeSelect.value = value('route');
  const b = data.buffered || {};
  const traces = data.traces || [];
  summary.className = 'summary';
  summary.textContent = `Showing ${traces.length} trace${traces.length === 1 ? '' : 's'}, newest first. `
    + `Buffer: ${b.traces ?? '?'} traces, ${b.spans ?? '?'} of at most ${b.max_spans ?? '?'} spans, ${b.evicted_traces ?? 0} traces evicted.`;
  const r = data.recorded || {};
  if (r.unrecorded_requests) {
    summary.textContent += ` Recording at most ${r.traces_per_second} requests a second (TRACE_EXPLORER_TRACES_PER_SECOND, as no other sink records spans): `
      + `${r.unrecorded_requests} request${r.unrecorded_requests === 1 ? ' was' : 's were'} not recorded.`;
  }
  if (!traces.length) {
    const filtered = TRACE_FILTERS.some((n) => value(n));
    results.replaceChildren(el('p', { class: 'empty', text: filtered && b.traces
      ? 'No buffered trace matches these filters.'
      : `No traces yet: make a request, e.g. curl ${location.host || 'localhost:4567'}/api/activities/home, then refresh.` }));
    return;
  }
  const longest = Math.max(...traces.map((t) => t.duration_ms || 0)) || 1;
  const rows = traces.map((t) => {
    const bar = el('span', { class: `minibar ${statusClass(t)}`, 'aria-hidden': 'true' });
    bar.style.width = `${Math.max(1, ((t.duration_ms || 0) / longest) * 100)}%`;
    return el('tr', { 'data-trace-id': t.trace_id },
      el('td', { class: 'name' }, el('a', { href: `#/trace/${t.trace_id}`, text: t.name || '(unnamed)' })),
      el('td', { class: `status ${statusClass(t)}`, title: `span status: ${t.status}` },
        t.status_code != null ? String(t.status_code) : '—', t.status === 'error' ? el('span', { class: 'badge bad', text: 'error' }) : null),
      el('td', { class: 'duration num', 'data-ms': t.duration_ms }, el('span', { class: 'bartrack' }, bar), el('span', { class: 'ms', text: fmtMs(t.duration_ms) })),
      el('td', { class: 'spans num', text: String(t.span_count) }),
      el('td', { class: 'start', title: t.start, text: fmtStart(t.start) }),
      el('td', { class: 'tid mono', text: t.trace_id }));
  });
  results.replaceChildren(el('table', { id: 'traces', class: 'grid' },
    el('thead', {}, el('tr', {}, ['Root span', 'Status', 'Duration', 'Spans', 'Start (UTC)', 'Trace ID']
      .map((h, i) => el('th', { scope: 'col', class: i === 2 || i === 3 ? 'num' : null, text: h })))),
    el('tbody', {}, rows)));
}

// ---- One trace as a waterfall ----------------------------------------------

// Spans in tree order: depth first, children by start; a span whose parent is
// not in the trace is at the top level.
function spanTree(spans) {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  const top = [];
  for (const s of spans) {
    const parent = s.parent_span_id;
    if (parent && ids.has(parent) && parent !== s.span_id) {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(s);
    } else top.push(s);
  }
  const byStart = (a, b) => (a.start_ms || 0) - (b.start_ms || 0);
  const out = [];
  const seen = new Set();
  const walk = (s, depth, isTop) => {
    if (seen.has(s.span_id)) return;
    seen.add(s.span_id);
    out.push({ span: s, depth, isTop });
    for (const c of (children.get(s.span_id) || []).sort(byStart)) walk(c, depth + 1, false);
  };
  for (const s of top.sort(byStart)) walk(s, 0, true);
  for (const s of spans) walk(s, 0, true); // spans in a parent cycle
  return out;
}

function kindClass(kind) {
  return KINDS.includes(kind) ? `kind-${kind}` : 'kind-other';
}

async function traceView(id, stale) {
  view.replaceChildren(el('p', { class: 'back' }, el('a', { href: '#/', text: '← All traces' })),
    el('h2', { tabindex: -1, text: `Trace ${id}` }), el('p', { class: 'summary loading', text: 'Loading…' }));
  const t = await api(`traces/${encodeURIComponent(id)}`);
  if (stale()) return;
  const spans = t.spans || [];
  const total = Math.max(t.duration_ms || 0, ...spans.map((s) => (s.start_ms || 0) + (s.duration_ms || 0))) || 1;
  const pct = (ms) => `${Math.min(100, Math.max(0, ((ms || 0) / total) * 100))}%`;
  const ordered = spanTree(spans);
  const root = ordered.length ? ordered[0].span : null;
  const links = t.links || {};

  const meta = el('dl', { class: 'meta' },
    el('div', {}, el('dt', { text: 'Trace ID' }), el('dd', { class: 'mono', text: t.trace_id })),
    el('div', {}, el('dt', { text: 'X-Ray ID' }), el('dd', { id: 'xray-id', class: 'mono', text: t.xray_id || '—' })),
    el('div', {}, el('dt', { text: 'Start (UTC)' }), el('dd', { text: fmtStart(t.start) })),
    el('div', {}, el('dt', { text: 'Duration' }), el('dd', { id: 'trace-duration', text: fmtMs(t.duration_ms) })),
    el('div', {}, el('dt', { text: 'Spans' }), el('dd', { text: String(spans.length) })),
    links.honeycomb || links.xray ? el('div', {}, el('dt', { text: 'Open in' }), el('dd', { class: 'links' },
      links.honeycomb ? el('a', { id: 'honeycomb-link', href: links.honeycomb, target: '_blank', rel: 'noopener', text: 'Honeycomb ↗' }) : null,
      links.xray ? el('a', { id: 'xray-link', href: links.xray, target: '_blank', rel: 'noopener', text: 'X-Ray console ↗' }) : null)) : null);

  const legend = el('ul', { class: 'legend', 'aria-label': 'Bar colours' },
    KINDS.map((k) => el('li', {}, el('span', { class: `swatch ${kindClass(k)}` }), k)),
    el('li', {}, el('span', { class: 'swatch kind-internal is-error' }), 'status error'));

  const tickValues = ticks(total, 6);
  const step = tickValues[1] - tickValues[0];
  const axis = el('div', { class: 'axis-row', 'aria-hidden': 'true' },
    el('div', { class: 'label', text: 'Span' }), el('div', { class: 'dur num', text: 'Duration' }),
    el('div', { class: 'track axis' }, tickValues.filter((v) => v <= total * 1.0001).map((v) => {
      const tick = el('span', { class: 'tick', text: tickLabel(v, step, ' ms') });
      tick.style.left = pct(v);
      return tick;
    })));
  const grid = el('div', { class: 'gridlines', 'aria-hidden': 'true' }, tickValues.filter((v) => v <= total * 1.0001).map((v) => {
    const line = el('span');
    line.style.left = pct(v);
    return line;
  }));

  const detail = el('section', { id: 'span-detail', hidden: true, 'aria-live': 'polite' });
  const hint = el('p', { class: 'hint', text: 'Select a span (click, or Tab to it and press Enter) to see its attributes and events.' });
  const rows = ordered.map(({ span: s, depth, isTop }) => {
    const error = s.status === 'error';
    const bar = el('div', { class: `bar ${kindClass(s.kind)}${error ? ' is-error' : ''}` });
    bar.style.left = pct(s.start_ms);
    bar.style.width = pct(s.duration_ms);
    const label = el('div', { class: 'label', title: s.name },
      el('span', { class: 'name', text: s.name }),
      el('span', { class: `kind ${kindClass(s.kind)}`, text: s.kind }),
      s.remote_parent ? el('span', { class: 'badge', title: "The parent is a caller's span, not in this buffer", text: 'remote parent' }) : null,
      error ? el('span', { class: 'badge bad', text: 'error' }) : null,
      (s.events || []).length ? el('span', { class: 'badge', text: `${s.events.length} event${s.events.length === 1 ? '' : 's'}` }) : null);
    label.style.paddingLeft = `${0.5 + depth * 1.1}rem`;
    const row = el('div', {
      class: `span-row${error ? ' is-error' : ''}`, tabindex: 0, role: 'button', 'aria-pressed': 'false',
      'aria-label': `${s.name}, ${s.kind}, ${fmtMs(s.duration_ms)}, status ${s.status}, depth ${depth}`,
      'data-span-id': s.span_id, 'data-parent-id': isTop ? '' : s.parent_span_id, 'data-depth': depth,
      'data-name': s.name, 'data-kind': s.kind, 'data-status': s.status, 'data-duration-ms': s.duration_ms,
    }, label, el('div', { class: 'dur num', text: fmtMs(s.duration_ms) }), el('div', { class: 'track' }, bar, (s.events || []).map((e) => {
      const mark = el('span', { class: 'event-mark', title: `${e.name} at +${fmtMs(e.time_ms)}` });
      mark.style.left = pct(e.time_ms);
      return mark;
    })));
    const choose = () => {
      for (const other of waterfall.querySelectorAll('.span-row[aria-pressed="true"]')) other.setAttribute('aria-pressed', 'false');
      row.setAttribute('aria-pressed', 'true');
      detail.replaceChildren(...spanDetail(s, isTop, t));
      detail.dataset.spanId = s.span_id;
      detail.hidden = false;
      hint.hidden = true;
    };
    row.addEventListener('click', choose);
    row.addEventListener('keydown', (event) => {
      const moves = { ArrowDown: row.nextElementSibling, ArrowUp: row.previousElementSibling };
      if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); choose(); }
      else if (event.key in moves) {
        event.preventDefault();
        if (moves[event.key] && moves[event.key].classList.contains('span-row')) moves[event.key].focus();
      }
    });
    return row;
  });
  const waterfall = el('div', { id: 'waterfall', role: 'group', 'aria-label': 'Spans on a shared time axis' }, grid, axis, rows);

  view.replaceChildren(el('p', { class: 'back' }, el('a', { href: '#/', text: '← All traces' })),
    el('h2', { tabindex: -1 }, root ? root.name : 'Trace', el('span', { class: 'muted', text: ` · ${fmtMs(t.duration_ms)}` })),
    meta, legend,
    spans.length ? el('div', { class: 'trace-layout' }, waterfall, el('aside', { class: 'detail-pane', 'aria-label': 'Selected span' }, hint, detail))
      : el('p', { class: 'empty', text: 'This trace has no spans.' }));
}

function attrTable(attributes, keyAttr) {
  const keys = Object.keys(attributes || {}).sort();
  if (!keys.length) return el('p', { class: 'muted', text: 'none' });
  return el('table', { class: 'attrs' }, el('tbody', {}, keys.map((k) => el('tr', { [keyAttr]: k },
    el('th', { scope: 'row', class: 'mono', text: k }), el('td', { class: 'mono', text: fmtAttr(attributes[k]) })))));
}

function spanDetail(s, isTop, t) {
  const ids = new Set((t.spans || []).map((x) => x.span_id));
  let parent = 'none (root)';
  if (s.parent_span_id) {
    parent = s.parent_span_id;
    if (s.remote_parent) parent += " (remote: a caller's span)";
    else if (!ids.has(s.parent_span_id)) parent += ' (not in the buffer)';
  }
  const events = s.events || [];
  const row = (k, v, cls) => el('tr', {}, el('th', { scope: 'row', text: k }), el('td', { class: cls, text: v }));
  return [
    el('h3', { text: s.name }),
    el('table', { class: 'attrs meta-table' }, el('tbody', {},
      row('Span ID', s.span_id, 'mono'), row('Parent', parent, 'mono'), row('Kind', s.kind),
      row('Status', s.status + (s.status_message ? `: ${s.status_message}` : ''), s.status === 'error' ? 'bad' : null),
      row('Starts at', `+${fmtMs(s.start_ms)}`), row('Duration', fmtMs(s.duration_ms)))),
    el('h4', { text: `Attributes (${Object.keys(s.attributes || {}).length})` }),
    attrTable(s.attributes, 'data-key'),
    el('h4', { text: `Events (${events.length})` }),
    events.length ? el('ol', { class: 'events' }, events.map((e) => el('li', { 'data-event': e.name },
      el('strong', { text: e.name }), el('span', { class: 'muted', text: ` at +${fmtMs(e.time_ms)}` }),
      attrTable(e.attributes, 'data-event-key')))) : el('p', { class: 'muted', text: 'none' }),
  ];
}

// ---- The query view --------------------------------------------------------

async function queryView(params, stale, refocus) {
  const value = (name) => params.get(name) || '';
  const form = el('form', { id: 'query', class: 'toolbar', 'aria-label': 'Query the buffered spans' },
    field('Calculate', selectOf('calc', CALCS.map((c) => [c, c.toUpperCase()]), value('calc') || 'count')),
    field('of', el('input', { name: 'of', type: 'text', list: 'attribute-keys', spellcheck: 'false', value: value('of') || 'duration_ms' })),
    field('Group by', el('input', { name: 'group_by', type: 'text', list: 'attribute-keys', spellcheck: 'false', value: value('group_by'), placeholder: 'e.g. http.route' })),
    field('Where attribute', el('input', { name: 'attribute', type: 'text', list: 'attribute-keys', spellcheck: 'false', value: value('attribute'), placeholder: 'app.cache_hit' })),
    field('equals', el('input', { name: 'equals', type: 'text', spellcheck: 'false', value: value('equals'), placeholder: '(exists)' })),
    field('Kind', selectOf('kind', [['', 'any'], ...KINDS.map((k) => [k, k])], value('kind'))),
    field('Time buckets', el('input', { name: 'buckets', type: 'number', min: 1, max: 200, step: 1, value: value('buckets'), placeholder: '30' })),
    el('div', { class: 'buttons' }, el('button', { type: 'submit', text: 'Run query' })));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    navigate(`#/query?${pick(new URLSearchParams(new FormData(form)), QUERY_FIELDS)}`);
  });
  const results = el('div', { class: 'results' }, el('p', { class: 'summary loading', text: 'Running the query…' }));
  view.replaceChildren(el('h2', { tabindex: -1, text: 'Query the buffered spans' }), form, results);
  if (refocus) { const target = view.querySelector(refocus); if (target) target.focus(); }

  const q = await api('query', pick(params, QUERY_FIELDS));
  if (stale()) return;
  const groups = q.groups || [];
  const calc = q.calc || value('calc') || 'count';
  const of = q.of || 'duration_ms';
  const colour = new Map(groups.map((g, i) => [String(g.group), PALETTE[i % PALETTE.length]]));
  const spanCount = groups.reduce((n, g) => n + (g.count || 0), 0);
  const title = `${calc.toUpperCase()}(${calc === 'count' ? '' : of})${q.group_by ? ` by ${q.group_by}` : ''}`;
  if (!groups.length) {
    results.replaceChildren(el('p', { class: 'empty', text: 'No buffered span matches this query. Make some requests, or loosen the filters.' }));
    return;
  }
  const fmt = (v) => fmtValue(v, of, 'p');
  const table = el('table', { id: 'query-results', class: 'grid' },
    el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: q.group_by || 'Group' }),
      ['Count', `Value: ${calc.toUpperCase()}`, 'P50', 'P90', 'P99', 'MAX'].map((h) => el('th', { scope: 'col', class: 'num', text: h })))),
    el('tbody', {}, groups.map((g) => {
      const swatch = el('span', { class: 'swatch', 'aria-hidden': 'true' });
      swatch.style.background = colour.get(String(g.group));
      return el('tr', { 'data-group': g.group == null ? '' : String(g.group) },
        el('td', { class: 'group' }, swatch, g.group == null ? '(none)' : String(g.group)),
        el('td', { class: 'count num', 'data-count': g.count, text: fmtNumber(g.count) }),
        el('td', { class: 'value num', 'data-value': g.value == null ? '' : g.value, text: fmtValue(g.value, of, calc) }),
        ['p50', 'p90', 'p99', 'max'].map((k) => el('td', { class: `${k} num`, text: fmt(g[k]) })));
    })));
  results.replaceChildren(
    el('p', { class: 'summary', text: `${title} over ${spanCount} span${spanCount === 1 ? '' : 's'}, ${groups.length} group${groups.length === 1 ? '' : 's'}, largest first.` }),
    table,
    el('h3', { text: `${title} over time` }), seriesChart(q, calc, of, colour),
    el('h3', { text: `Heatmap of ${of}` }), heatmapChart(q, of));
}

const CHART = { w: 1000, h: 260, l: 72, r: 210, t: 14, b: 30 };

// Time labels under a chart with n buckets from start, step ms each.
function timeAxis(start, step, n) {
  const { w, h, l, r, b } = CHART;
  const every = Math.max(1, Math.ceil(n / 6));
  const withMs = step * every < 5000;
  const out = [svg('line', { x1: l, x2: w - r, y1: h - b, y2: h - b, class: 'axis-line' })];
  for (let i = 0; i <= n; i += every) {
    const x = l + (i / n) * (w - l - r);
    out.push(svg('line', { x1: x, x2: x, y1: h - b, y2: h - b + 4, class: 'axis-line' }),
      svg('text', { x, y: h - b + 16, 'text-anchor': 'middle', class: 'axis-label', text: fmtClock(start + i * step, withMs) }));
  }
  return out;
}

function noChart(text) {
  return el('p', { class: 'muted', text });
}

function seriesChart(q, calc, of, colour) {
  const series = q.series;
  const lines = (series && series.groups) || [];
  const n = Math.max(0, ...lines.map((g) => (g.values || []).length));
  if (!n) return noChart('No time series in the answer.');
  const { w, h, l, r, t, b } = CHART;
  const all = lines.flatMap((g) => (g.values || []).filter((v) => v != null));
  const yTicks = ticks(Math.max(0, ...all), 4);
  const top = yTicks[yTicks.length - 1] || 1;
  const x = (i) => l + ((i + 0.5) / n) * (w - l - r);
  const y = (v) => h - b - (v / top) * (h - t - b);
  const chart = svg('svg', { id: 'series', viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': `${calc} of ${of} per time bucket, one line per group` });
  for (const v of yTicks) {
    chart.append(svg('line', { x1: l, x2: w - r, y1: y(v), y2: y(v), class: 'grid-line' }),
      svg('text', { x: l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis-label', text: axisValue(v, yTicks[1] - yTicks[0], of, calc) }));
  }
  chart.append(...timeAxis(series.start_unix_ms, series.step_ms, n));
  const order = [...colour.keys()];
  const rank = (g) => { const i = order.indexOf(String(g.group)); return i < 0 ? order.length : i; };
  [...lines].sort((a, b) => rank(a) - rank(b)).forEach((g, index) => {
    const stroke = colour.get(String(g.group)) || PALETTE[index % PALETTE.length];
    const name = g.group == null ? '(none)' : String(g.group);
    let d = '';
    const dots = [];
    (g.values || []).forEach((v, i) => {
      if (v == null) return; // an empty bucket: the line goes on to the next value
      d += `${d ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      dots.push(svg('circle', { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: stroke },
        svg('title', { text: `${name} · ${fmtClock(series.start_unix_ms + i * series.step_ms, true)}: ${fmtValue(v, of, calc)}` })));
    });
    chart.append(svg('g', { class: 'line', 'data-group': g.group == null ? '' : String(g.group) },
      svg('path', { d, fill: 'none', stroke, 'stroke-width': 2 }), dots));
    if (index < 10) {
      const ly = t + 6 + index * 18;
      chart.append(svg('g', { class: 'legend-item' },
        svg('rect', { x: w - r + 14, y: ly - 5, width: 14, height: 4, fill: stroke }),
        svg('text', { x: w - r + 34, y: ly + 1, class: 'legend-label', text: name.length > 26 ? `${name.slice(0, 25)}…` : name },
          svg('title', { text: name }))));
    } else if (index === 10) {
      chart.append(svg('text', { x: w - r + 14, y: t + 6 + index * 18, class: 'legend-label', text: `+ ${lines.length - 10} more` }));
    }
  });
  return el('figure', { class: 'chart' }, chart,
    el('figcaption', { text: `Each point is one ${fmtMs(series.step_ms)} bucket; times in UTC.` }));
}

function heatmapChart(q, of) {
  const hm = q.heatmap;
  const edges = (hm && hm.edges) || [];
  const counts = (hm && hm.counts) || [];
  const rows = edges.length - 1;
  if (rows < 1 || !counts.length) return noChart(`No numeric values of ${of} to plot.`);
  const { w, h, l, r, t, b } = CHART;
  const cw = (w - l - r) / counts.length;
  const rh = (h - t - b) / rows;
  const max = Math.max(1, ...counts.flat().filter(Number.isFinite));
  const shade = (c) => `hsl(217, 85%, ${Math.round(90 - 62 * Math.sqrt(c / max))}%)`;
  const chart = svg('svg', { id: 'heatmap', viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': `Heatmap: spans per time bucket and ${of} bucket` });
  chart.append(svg('rect', { x: l, y: t, width: w - l - r, height: h - t - b, class: 'plot-bg' }));
  counts.forEach((column, i) => {
    (column || []).slice(0, rows).forEach((c, j) => {
      if (!c) return;
      chart.append(svg('rect', {
        class: 'cell', x: (l + i * cw).toFixed(2), y: (h - b - (j + 1) * rh).toFixed(2),
        width: Math.max(0.5, cw - 1).toFixed(2), height: Math.max(0.5, rh - 1).toFixed(2), fill: shade(c), 'data-count': c,
      }, svg('title', { text: `${fmtClock(hm.start_unix_ms + i * hm.step_ms, true)} · ${fmtValue(edges[j], of, 'p')} – ${fmtValue(edges[j + 1], of, 'p')}: ${c} span${c === 1 ? '' : 's'}` })));
    });
  });
  const labels = [6, 5, 4, 3, 2].find((n) => n <= rows && rows % n === 0) || 1;
  for (let k = 0; k <= labels; k += 1) {
    const j = Math.round((k * rows) / labels);
    const yy = h - b - j * rh;
    chart.append(svg('line', { x1: l - 4, x2: l, y1: yy, y2: yy, class: 'axis-line' }),
      svg('text', { x: l - 6, y: yy + 4, 'text-anchor': 'end', class: 'axis-label', text: axisValue(edges[j], (edges[rows] - edges[0]) / labels / 10, of, 'p') }));
  }
  chart.append(...timeAxis(hm.start_unix_ms, hm.step_ms, counts.length));
  const scale = [0.05, 0.25, 0.5, 0.75, 1].map((f, i) => svg('rect', { x: w - r + 14 + i * 22, y: t + 4, width: 22, height: 12, fill: shade(f * max) }));
  chart.append(svg('g', { class: 'legend-item' }, scale,
    svg('text', { x: w - r + 14, y: t + 32, class: 'legend-label', text: '1' }),
    svg('text', { x: w - r + 124, y: t + 32, 'text-anchor': 'end', class: 'legend-label', text: String(max) }),
    svg('text', { x: w - r + 14, y: t + 50, class: 'legend-label', text: 'spans per cell' })));
  return el('figure', { class: 'chart' }, chart,
    el('figcaption', { text: `Rows are ${of} buckets (edges on the left), columns ${fmtMs(hm.step_ms)} of time (UTC); darker = more spans.` }));
}

window.addEventListener('hashchange', route);
route();
