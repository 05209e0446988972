// The stub in headless Chromium against a running backend: serves DIR on
// 127.0.0.1:PORT, loads the home feed, posts a crud, replies to it, opens the
// author's feed and the notifications, flushes
// the page's spans to the relay, saves a screenshot of the home feed, and
// prints {"message", "reply", "uuid"} as JSON for the caller to check the
// traces. Run by tests/browser.rs:
//   node test/browser.mjs DIR PORT SCREENSHOT
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { chromium } from 'playwright-core';

const [dir, port, screenshot] = process.argv.slice(2);
const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };

const server = createServer(async (request, response) => {
  const path = normalize(new URL(request.url, 'http://x').pathname).replace(/^(\.\.[/\\])+/, '');
  try {
    const body = await readFile(join(dir, path === '/' ? 'index.html' : path));
    response.writeHead(200, { 'content-type': types[extname(path) || '.html'] || 'application/octet-stream' });
    response.end(body);
  } catch {
    response.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(Number(port), '127.0.0.1', resolve));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console: ${msg.text()}`); });
  page.on('response', (answer) => { if (answer.status() >= 400) problems.push(`${answer.status()} ${answer.url()}`); });

  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForSelector('#feed[data-loaded="Home"] article.crud', { timeout: 15000 });
  await page.screenshot({ path: screenshot, fullPage: true });

  const message = `Shipped from Chromium ${Date.now()}`;
  await page.fill('#crud-form textarea', message);
  await page.selectOption('#crud-form select', '1-day');
  await page.click('#crud-form button');
  const first = page.locator('#feed article.crud').first();
  await first.locator('.message', { hasText: message }).waitFor({ timeout: 15000 });
  const uuid = await first.getAttribute('data-uuid');

  const reply = `A reply from Chromium ${Date.now()}`;
  await first.locator('.reply-form input').fill(reply);
  await first.locator('.reply-form button').click();
  await first.locator('.reply', { hasText: reply }).waitFor({ timeout: 15000 });

  // The user's feed shows the new crud; notifications load.
  await page.click('nav a[href="#/@andrewbrown"]');
  await page.locator('#feed[data-loaded="@andrewbrown"] .message', { hasText: message }).waitFor({ timeout: 15000 });
  await page.click('nav a[href="#/notifications"]');
  await page.waitForSelector('#feed[data-loaded="Notifications"]', { timeout: 15000 });

  // The fetch instrumentation ends its span once the resource timing entry
  // arrives (up to 300 ms after the answer): give it that, then flush.
  await page.waitForTimeout(1000);
  await page.evaluate(() => window.cruddurFlushTraces());
  if (problems.length) throw new Error(problems.join('\n'));
  console.log(JSON.stringify({ message, reply, uuid }));
} finally {
  await browser.close();
  server.close();
}
