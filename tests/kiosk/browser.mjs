// The browser half of tests/tests/kiosk.rs: Debian's Chromium, headless,
// driven by playwright-core (no browser of its own), told what to do by the
// Rust test one JSON line at a time on standard input, each answered with one
// JSON line on standard output: {"id":N,"ok":true,"value":...} or
// {"id":N,"ok":false,"error":"..."}. Run from target/kiosk, where
// scripts/install-test-deps.sh installed tests/kiosk/package-lock.json (the
// test copies this file there).
//
// ops: open {url}, screen {screen} (waits for main[data-screen]), tap
// {selector}, text {selector}, attr {selector, name}, wait_text {selector, text}, leaks (what the
// browser holds: storage, cookies, the DOM), requests (every URL the page
// asked for), shot {name, dir, update} (compare with or write dir/name.png),
// close.
import { chromium } from 'playwright-core';
import pixelmatch from 'pixelmatch';
import { PNG } from 'pngjs';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const TIMEOUT_MS = 20000;
// Pixels that may differ (after pixelmatch's own per-pixel threshold and its
// anti-aliasing detection) before a screenshot counts as changed: 0.2 % of
// 800x480.
const MAX_DIFF = 768;

let browser, context, page;
const requests = [];

function reply(id, ok, v) {
  process.stdout.write(JSON.stringify(ok ? { id, ok, value: v ?? null } : { id, ok, error: String(v) }) + '\n');
}

const ops = {
  async open({ url }) {
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
    context = await browser.newContext({ viewport: { width: 800, height: 480 }, deviceScaleFactor: 1, hasTouch: true });
    context.setDefaultTimeout(TIMEOUT_MS);
    page = await context.newPage();
    page.on('request', (r) => requests.push(r.url()));
    page.on('websocket', (w) => requests.push(w.url()));
    await page.goto(url);
    return page.url();
  },
  async screen({ screen }) {
    await page.waitForSelector(`main[data-screen="${screen}"]`);
    return screen;
  },
  async tap({ selector }) {
    await page.locator(selector).tap();
  },
  async text({ selector }) {
    return await page.locator(selector).textContent();
  },
  async attr({ selector, name }) {
    return await page.locator(selector).first().getAttribute(name);
  },
  async wait_text({ selector, text }) {
    await page.waitForFunction(([s, t]) => {
      const e = document.querySelector(s);
      return e && e.textContent === t;
    }, [selector, text]);
  },
  async leaks() {
    const held = await page.evaluate(() => {
      const kv = (s) => { const o = {}; for (let i = 0; i < s.length; i++) o[s.key(i)] = s.getItem(s.key(i)); return o; };
      return { local: kv(localStorage), session: kv(sessionStorage), cookie: document.cookie, dom: document.documentElement.outerHTML };
    });
    held.cookies = await context.cookies();
    return held;
  },
  async requests() {
    return requests;
  },
  async shot({ name, dir, update }) {
    // What changes with time ([data-live]: countdowns, HH:MM) is shown in
    // the docs' pictures as it was when they were made, and left out of the
    // comparison: its boxes (as laid out now) are painted over in both
    // pictures before they are compared.
    const boxes = await page.evaluate(() => Array.from(document.querySelectorAll('[data-live]'))
      .map((e) => e.getBoundingClientRect())
      .filter((r) => r.width > 0 && r.height > 0)
      .map((r) => [r.left, r.top, r.right, r.bottom]));
    const buf = await page.screenshot({ animations: 'disabled', caret: 'hide' });
    const file = path.join(dir, `${name}.png`);
    if (update) {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(file, buf);
      return { written: file };
    }
    if (!fs.existsSync(file)) throw new Error(`${file} missing: run the test with PORTER_KIOSK_SHOTS=update to write it`);
    const want = PNG.sync.read(fs.readFileSync(file));
    const got = PNG.sync.read(buf);
    if (want.width !== got.width || want.height !== got.height) {
      throw new Error(`${name}: ${got.width}x${got.height}, ${file} is ${want.width}x${want.height}`);
    }
    for (const img of [want, got]) paintOver(img, boxes);
    const diff = new PNG({ width: got.width, height: got.height });
    const n = pixelmatch(want.data, got.data, diff.data, got.width, got.height, { threshold: 0.1 });
    if (n > MAX_DIFF) {
      const out = path.resolve('shots-failed');
      fs.mkdirSync(out, { recursive: true });
      fs.writeFileSync(path.join(out, `${name}.png`), buf);
      fs.writeFileSync(path.join(out, `${name}.diff.png`), PNG.sync.write(diff));
      throw new Error(`${name}: ${n} pixels differ from ${file} (at most ${MAX_DIFF}); this run's and the difference are in ${out}; PORTER_KIOSK_SHOTS=update rewrites the docs' copies`);
    }
    return { differing: n };
  },
  async close() {
    if (browser) await browser.close();
    browser = undefined;
  },
};

// Paints the boxes [left, top, right, bottom] (CSS pixels, the scale is 1)
// and 2 pixels around them black in `img`.
function paintOver(img, boxes) {
  for (const [l, t, r, b] of boxes) {
    const x0 = Math.max(0, Math.floor(l) - 2), x1 = Math.min(img.width, Math.ceil(r) + 2);
    const y0 = Math.max(0, Math.floor(t) - 2), y1 = Math.min(img.height, Math.ceil(b) + 2);
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const i = (y * img.width + x) * 4;
        img.data[i] = 0; img.data[i + 1] = 0; img.data[i + 2] = 0; img.data[i + 3] = 255;
      }
    }
  }
}

const rl = readline.createInterface({ input: process.stdin });
// One command at a time, in order.
let chain = Promise.resolve();
rl.on('line', (line) => {
  chain = chain.then(async () => {
    let msg;
    try { msg = JSON.parse(line); } catch (e) { reply(null, false, `not JSON: ${e.message}`); return; }
    const op = ops[msg.op];
    if (!op) { reply(msg.id, false, `unknown op ${msg.op}`); return; }
    try { reply(msg.id, true, await op(msg)); } catch (e) { reply(msg.id, false, e.message); }
  });
});
rl.on('close', () => { chain.then(() => ops.close()).then(() => process.exit(0)); });
