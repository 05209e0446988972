// The trace explorer (/_explorer/) in headless Chromium against a running
// backend: lists the traces, filters them by a route, opens one trace's
// waterfall and a span's details, runs a query (P90 of duration_ms by
// http.route over server spans), saves list.png, waterfall.png and
// heatmap.png into ARTIFACT_DIR, and prints one JSON line
// {"listed", "filtered", "spans", "detail_keys", "query", "problems"} for
// the caller to check. Run by the backend's explorer test:
//   node test/explorer.mjs BACKEND_URL ARTIFACT_DIR EXPECT_JSON
// EXPECT_JSON names a file {"trace_ids": [...], "trace_id": "...", "route": "..."}:
// the traces the test made (waited for in the list), the one to open, and
// the route to filter by.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [backend, artifacts, expectPath] = process.argv.slice(2);
if (!backend || !artifacts || !expectPath) {
  console.error('usage: node test/explorer.mjs BACKEND_URL ARTIFACT_DIR EXPECT_JSON');
  process.exit(2);
}
const expected = JSON.parse(await readFile(expectPath, 'utf8'));
const page_url = `${backend.replace(/\/+$/, '')}/_explorer/`;
const TIMEOUT = 15000;
await mkdir(artifacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(TIMEOUT);
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console: ${msg.text()}`); });
  page.on('response', (answer) => { if (answer.status() >= 400) problems.push(`${answer.status()} ${answer.url()}`); });
  page.on('requestfailed', (request) => problems.push(`failed: ${request.url()} ${request.failure()?.errorText ?? ''}`));
  await page.exposeFunction('explorerCspViolation', (text) => problems.push(`CSP violation: ${text}`));
  await page.addInitScript(() => document.addEventListener('securitypolicyviolation',
    (e) => window.explorerCspViolation(`${e.violatedDirective} ${e.blockedURI}`)));

  // The view's data fetched and rendered (the page sets data-loaded="false"
  // as soon as it starts loading, "error" when the API answered an error).
  const loaded = async (view, hashHas = '') => {
    await page.waitForFunction(([v, h]) => {
      const main = document.getElementById('view');
      return main && main.dataset.view === v && main.dataset.loaded !== 'false' && location.hash.includes(h);
    }, [view, hashHas], { timeout: TIMEOUT });
    if (await page.getAttribute('#view', 'data-loaded') !== 'true') {
      throw new Error(`the ${view} view did not load: ${await page.textContent('#error')}`);
    }
  };
  const rowIds = () => page.$$eval('table#traces tbody tr[data-trace-id]', (rows) => rows.map((r) => r.dataset.traceId));

  // The list, refreshed until the test's traces have reached the buffer.
  await page.goto(page_url);
  await loaded('traces');
  let listed = await rowIds();
  for (let i = 0; i < 20 && !(expected.trace_ids || []).every((id) => listed.includes(id)); i += 1) {
    await page.waitForTimeout(500);
    await page.click('button#refresh');
    await loaded('traces');
    listed = await rowIds();
  }
  await page.screenshot({ path: join(artifacts, 'list.png'), fullPage: true });

  await page.selectOption('form#filters select[name="route"]', expected.route);
  await page.click('form#filters button[type="submit"]');
  await loaded('traces', 'route=');
  const filtered = await rowIds();

  // One trace's waterfall and the first span below the top level.
  await page.evaluate((hash) => { location.hash = hash; }, `#/trace/${expected.trace_id}`);
  await loaded('trace');
  const spans = await page.$$eval('#waterfall .span-row', (rows) => rows.map((r) => ({
    span_id: r.dataset.spanId, parent_id: r.dataset.parentId, depth: Number(r.dataset.depth),
    name: r.dataset.name, kind: r.dataset.kind, duration_ms: Number(r.dataset.durationMs),
  })));
  let detailKeys = [];
  const child = page.locator('#waterfall .span-row[data-depth="1"]').first();
  if (await child.count()) {
    const spanId = await child.getAttribute('data-span-id');
    await child.click();
    await page.waitForSelector(`#span-detail[data-span-id="${spanId}"]:not([hidden])`, { timeout: TIMEOUT });
    detailKeys = await page.$$eval('#span-detail tr[data-key]', (rows) => rows.map((r) => r.dataset.key));
  } else {
    problems.push(`trace ${expected.trace_id} has no span at depth 1 to open`);
  }
  await page.screenshot({ path: join(artifacts, 'waterfall.png'), fullPage: true });

  // The query view: P90 of duration_ms by http.route over server spans.
  await page.click('nav a#nav-query');
  await loaded('query');
  await page.selectOption('form#query select[name="calc"]', 'p90');
  await page.fill('form#query input[name="of"]', 'duration_ms');
  await page.fill('form#query input[name="group_by"]', 'http.route');
  await page.selectOption('form#query select[name="kind"]', 'server');
  await page.click('form#query button[type="submit"]');
  await loaded('query', 'kind=server');
  const query = await page.$$eval('table#query-results tbody tr', (rows) => rows.map((r) => {
    const value = r.querySelector('td.value').dataset.value;
    return {
      group: r.querySelector('td.group').textContent === '(none)' && r.dataset.group === '' ? null : r.dataset.group,
      count: Number(r.querySelector('td.count').dataset.count),
      value: value === '' ? null : Number(value),
    };
  }));
  await page.screenshot({ path: join(artifacts, 'heatmap.png'), fullPage: true });

  console.log(JSON.stringify({ listed, filtered, spans, detail_keys: detailKeys, query, problems }));
} catch (err) {
  console.error(err && err.stack ? err.stack : String(err));
  process.exitCode = 1;
} finally {
  await browser.close();
}
