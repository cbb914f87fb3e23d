// Page weight and time to a decision on the officer console, measured in headless Chromium
// against a running gate agent (scripts/bench-console starts the demo for it).
//
// Per run, in a fresh browser context (empty cache, no cookies):
// - login page weight, then the officer's credentials are typed and Enter pressed: the clock
//   starts at that key press;
// - "first paint": the console's first contentful paint (Paint Timing), on the same clock;
// - "first decision": the console's decision box shows FAST, STANDARD or INSPECT (polled on
//   every animation frame);
// - console page weight: the document, its style sheet and script (Resource Timing
//   transferSize, i.e. bytes on the wire with headers, and decodedBodySize).
// Then one live session per lane for LIVE_S seconds: for every new decision the console
// shows, the time from the agent's decision (`decided_at`, from GET /api/v1/transactions/{id})
// to the moment the box changed in the page (a MutationObserver; same host clock).
// Env: GATE_URL, PASSWORD, USER_NAME (default officer), RUNS (default 10), LANES (default
// L1,L2,L3,L4), LIVE_S (default 90), OUT (optional JSON file), CHROMIUM.
import { chromium } from 'playwright-core';
import { writeFileSync } from 'node:fs';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined || v === '') throw new Error(`environment variable ${k} is not set`);
  return v;
};
const GATE = env('GATE_URL').replace(/\/$/, '');
const PASSWORD = env('PASSWORD');
const USER = env('USER_NAME', 'officer');
const RUNS = Number(env('RUNS', '10'));
const LANES = env('LANES', 'L1,L2,L3,L4').split(',');
const LIVE_S = Number(env('LIVE_S', '90'));

const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const rank = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  return { n: s.length, p50: rank(50), p90: rank(90), max: s[s.length - 1], first: xs[0] };
}

// Bytes of the page's own document and static resources (not the live feed).
const weight = () => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource').filter((r) => ['link', 'script', 'css', 'img'].includes(r.initiatorType));
  const all = [nav, ...res];
  return {
    transfer: all.reduce((a, r) => a + r.transferSize, 0),
    decoded: all.reduce((a, r) => a + r.decodedBodySize, 0),
    requests: all.length,
    items: all.map((r) => `${new URL(r.name).pathname} ${r.transferSize}/${r.decodedBodySize}`),
  };
};

const runs = [];
try {
  for (let i = 0; i < RUNS; i += 1) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    ctx.setDefaultTimeout(30000);
    const page = await ctx.newPage();
    await page.goto(`${GATE}/login`, { waitUntil: 'load' });
    const loginWeight = await page.evaluate(weight);
    await page.fill('input[name="name"]', USER);
    await page.fill('input[name="password"]', PASSWORD);
    const t0 = Date.now();
    await page.press('input[name="password"]', 'Enter');
    await page.waitForURL(/\/console/, { waitUntil: 'domcontentloaded' });
    // Whether the lane was reading a truck when the console arrived: then it shows no
    // decision until that truck is decided (it never shows the previous truck's).
    const reading = await page.evaluate(() => document.querySelector('#lane-live')?.dataset.reading === 'true');
    await page.waitForFunction(() => /^(FAST|STANDARD|INSPECT)$/.test(document.querySelector('#lane-live')?.dataset.decision ?? ''), null, { polling: 'raf' });
    const t1 = Date.now();
    await page.waitForLoadState('load');
    const m = await page.evaluate(() => ({
      origin: performance.timeOrigin,
      fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null,
    }));
    const consoleWeight = await page.evaluate(weight);
    runs.push({
      toDecisionMs: t1 - t0,
      truckBeingRead: reading,
      toFirstPaintMs: m.fcp === null ? null : Math.round(m.origin + m.fcp - t0),
      fcpFromNavigationMs: m.fcp === null ? null : Math.round(m.fcp),
      loginWeight,
      consoleWeight,
    });
    console.log(`run ${i + 1}: submit → first paint ${runs[i].toFirstPaintMs} ms, → decision ${runs[i].toDecisionMs} ms${reading ? ' (a truck was being read)' : ''}; console ${consoleWeight.transfer} B on the wire (${consoleWeight.requests} requests)`);
    await ctx.close();
  }

  // Live: decision (agent clock) → shown in the page (browser clock; same host).
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  ctx.setDefaultTimeout(30000);
  const first = await ctx.newPage();
  await first.goto(`${GATE}/login`);
  await first.fill('input[name="name"]', USER);
  await first.fill('input[name="password"]', PASSWORD);
  await Promise.all([first.waitForURL(/\/console/), first.press('input[name="password"]', 'Enter')]);
  const pages = [];
  for (const lane of LANES) {
    const p = await ctx.newPage();
    await p.goto(`${GATE}/console?lane=${lane}`);
    await p.evaluate(() => {
      window.__shown = [];
      const live = document.getElementById('live');
      let seen = live.querySelector('#lane-live')?.dataset.tx ?? '';
      new MutationObserver(() => {
        const d = live.querySelector('#lane-live');
        if (!d || !d.dataset.tx || d.dataset.tx === seen || !/^(FAST|STANDARD|INSPECT)$/.test(d.dataset.decision)) return;
        seen = d.dataset.tx;
        window.__shown.push({ tx: d.dataset.tx, at: performance.timeOrigin + performance.now() });
      }).observe(live, { childList: true, subtree: true, attributes: true });
    });
    pages.push(p);
  }
  await first.waitForTimeout(LIVE_S * 1000);
  const live = [];
  for (const p of pages) {
    for (const s of await p.evaluate(() => window.__shown)) {
      const r = await p.evaluate(async (id) => (await fetch(`/api/v1/transactions/${id}`)).json(), s.tx);
      if (r.decision?.decided_at) live.push(s.at - Date.parse(r.decision.decided_at));
    }
  }
  await ctx.close();
  await browser.close();

  const summary = {
    runs: RUNS,
    submitToFirstPaintMs: stats(runs.map((r) => r.toFirstPaintMs).filter((x) => x !== null)),
    submitToDecisionMs: stats(runs.map((r) => r.toDecisionMs)),
    submitToDecisionLaneDecidedMs: stats(runs.filter((r) => !r.truckBeingRead).map((r) => r.toDecisionMs)),
    submitToDecisionTruckBeingReadMs: runs.some((r) => r.truckBeingRead) ? stats(runs.filter((r) => r.truckBeingRead).map((r) => r.toDecisionMs)) : null,
    consoleFcpFromNavigationMs: stats(runs.map((r) => r.fcpFromNavigationMs).filter((x) => x !== null)),
    loginPage: runs[0].loginWeight,
    consolePage: runs[0].consoleWeight,
    liveDecisionToScreenMs: live.length ? stats(live.map((x) => Math.round(x))) : null,
    liveSeconds: LIVE_S,
    lanes: LANES,
  };
  console.log(JSON.stringify(summary, null, 2));
  if (process.env.OUT) writeFileSync(process.env.OUT, JSON.stringify({ summary, runs }, null, 2));
  if (live.length === 0) throw new Error(`no live decision was seen on ${LANES.join(',')} in ${LIVE_S} s`);
  process.exit(0);
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  await browser.close().catch(() => {});
  process.exit(1);
}
