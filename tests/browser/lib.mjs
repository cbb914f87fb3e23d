// What the browser scripts share: their settings from the environment, the check that
// fails the run, Chromium's launch flags, a browser profile of the run's own, the agent's
// login, the line-per-question channel to the Rust test that started the script, the
// accessibility audit (axe-core) and the keyboard walks.
import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

// The environment variable `k`, which the test that started the script must set.
export function env(k) {
  const v = process.env[k];
  if (!v) throw new Error(`environment variable ${k} is not set`);
  return v;
}

// Fails the run, saying `what`, unless `cond` holds; says so on stdout when it does.
export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

// Signs `name` in to the agent's console at `base` with `password` in a new page of
// `context`; returns the page, where the login sent it.
export async function agentLogin(context, base, name, password) {
  const page = await context.newPage();
  await page.goto(base + '/login');
  await page.fill('input[name="name"]', name);
  await page.fill('input[name="password"]', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
  return page;
}

// Headless, no sandbox or GPU, and no traffic of Chromium's own (updates, sync, QUIC).
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync'];

// A persistent context on a fresh profile, removed however the script ends; `options` are
// added to playwright's (viewport, locale). Every action waits at most 10 s.
export async function launchWithProfile(executablePath, options = {}) {
  const userDataDir = mkdtempSync(join(tmpdir(), 'aeogate-chromium-'));
  process.on('exit', () => rmSync(userDataDir, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    ...options,
  });
  context.setDefaultTimeout(10000);
  return context;
}

// The test answers on stdin: ask(q) prints the request line q and resolves with the next
// answer line.
export function stdioQuestions() {
  const rl = createInterface({ input: process.stdin });
  const answers = [];
  const waiters = [];
  rl.on('line', (l) => (waiters.length ? waiters.shift()(l) : answers.push(l)));
  return (q) => {
    console.log(q);
    return new Promise((res) => (answers.length ? res(answers.shift()) : waiters.push(res)));
  };
}

// Runs axe-core (its source `axeSource`) with the rule `tags` on the page as it is now
// (on the elements matching `within`, or the whole document). The engine is evaluated
// through the DevTools protocol, so the page's Content-Security-Policy stays as it is for
// the page's own scripts. Returns the violations whose impact is in `blocking`, and how
// many others there were.
export async function axeViolations(page, axeSource, tags, blocking, within = null) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(([t, w]) => window.axe.run(w ?? document, {
    runOnly: { type: 'tag', values: t },
    resultTypes: ['violations'],
  }), [tags, within]);
  const bad = result.violations.filter((v) => blocking.has(v.impact));
  return { bad, minor: result.violations.length - bad.length };
}

// The rules the screens are held to: WCAG 2.0 and 2.1, levels A and AA.
export const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
// The impacts that fail a run.
export const AXE_BLOCKING = new Set(['serious', 'critical']);

// The accessibility audit of one run: `audit(page, lang, screen)` checks that the page
// says its language in <html lang> and runs axe-core on it as it is now, keeping every
// serious or critical violation; `control(page)` shows the engine live on that page;
// `finish(what)` prints the count and ends the script, with exit code 1 and every
// violation (rule id, element, help) when there was one.
export function axeAudit() {
  const require = createRequire(import.meta.url);
  const source = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  const version = JSON.parse(readFileSync(require.resolve('axe-core/package.json'), 'utf8')).version;
  const failures = [];
  let screens = 0;
  return {
    failures,
    async audit(page, lang, screen) {
      const htmlLang = await page.evaluate(() => document.documentElement.lang);
      if (htmlLang !== lang) throw new Error(`check failed: ${screen} [${lang}]: <html lang> is ${JSON.stringify(htmlLang)}`);
      const { bad, minor } = await axeViolations(page, source, AXE_TAGS, AXE_BLOCKING);
      screens += 1;
      console.log(`- axe ${screen} [${lang}]: ${bad.length} serious/critical, ${minor} minor/moderate rule(s)`);
      for (const v of bad) {
        for (const n of v.nodes) {
          failures.push(`${screen} [${lang}] ${v.impact} ${v.id}: ${n.target.join(' ')} — ${v.help} (${v.helpUrl})`);
        }
      }
      return bad.length;
    },
    // Text at 2:1 contrast and a select without a name, put into the page's <main> (or
    // body), must come back as serious violations through the same rules and filter as
    // the screens' own; the probe is removed again.
    async control(page) {
      await page.evaluate(() => {
        const c = document.createElement('div');
        c.id = 'axe-control';
        // Styled through the CSSOM: a page's Content-Security-Policy may refuse style
        // attributes in markup.
        const p = document.createElement('p');
        p.style.cssText = 'color:#aaa;background:#fff;font-size:15px';
        p.textContent = 'low contrast probe';
        const sel = document.createElement('select');
        sel.appendChild(document.createElement('option')).textContent = 'a';
        c.append(p, sel);
        (document.querySelector('main') ?? document.body).appendChild(c);
      });
      const { bad } = await axeViolations(page, source, AXE_TAGS, AXE_BLOCKING, '#axe-control');
      await page.evaluate(() => document.getElementById('axe-control').remove());
      const ids = bad.map((v) => v.id);
      if (!ids.includes('color-contrast') || !ids.includes('select-name')) {
        throw new Error(`check failed: axe did not report the control probe (${ids.join(', ')})`);
      }
      console.log('ok - control: axe reports a 2:1 contrast text and a select without a name as serious');
    },
    finish(what) {
      console.log(`axe-core ${version}, tags ${AXE_TAGS.join(',')}: ${screens} screen states checked`);
      if (failures.length > 0) {
        console.error(`${failures.length} serious or critical accessibility violation(s):`);
        for (const f of failures) console.error(`  ${f}`);
        process.exit(1);
      }
      console.log(`${what}: no serious or critical accessibility violations`);
      process.exit(0);
    },
  };
}

// The focused element shows a focus ring (:focus-visible, an outline of at least 2 px);
// throws naming `where` when it does not.
export async function focusRing(page, where) {
  const f = await page.evaluate(() => {
    const e = document.activeElement;
    if (!e || e === document.body) return null;
    const st = getComputedStyle(e);
    return { tag: e.tagName, name: e.getAttribute('name') || e.textContent.trim().slice(0, 30),
      visible: e.matches(':focus-visible'), outline: st.outlineStyle, width: parseFloat(st.outlineWidth) };
  });
  if (f !== null && !(f.visible && f.outline !== 'none' && f.width >= 2)) {
    throw new Error(`check failed: ${where}: focused ${f.tag} ${f.name} shows no focus ring (${JSON.stringify(f)})`);
  }
}

// Tab alone, from the top of the page, reaches every visible control of it, each with
// its focus ring; throws otherwise.
export async function tabWalk(page, screen) {
  const total = await page.evaluate(() => {
    document.activeElement?.blur();
    window.scrollTo(0, 0);
    const all = [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, summary')]
      .filter((e) => !e.disabled && e.checkVisibility());
    all.forEach((e, i) => e.setAttribute('data-kb', String(i)));
    return all.length;
  });
  const reached = new Set();
  for (let i = 0; i < total + 5 && reached.size < total; i += 1) {
    await page.keyboard.press('Tab');
    await focusRing(page, screen);
    const kb = await page.evaluate(() => document.activeElement?.getAttribute('data-kb') ?? null);
    if (kb !== null) reached.add(kb);
  }
  if (reached.size !== total) {
    throw new Error(`check failed: ${screen}: Tab reaches ${reached.size} of its ${total} controls`);
  }
  console.log(`ok - ${screen}: Tab reaches all ${total} controls, each with a focus ring`);
}

// Tabs forward (at most `limit` times) until the element matching `selector` has focus;
// every control passed on the way shows its focus ring.
export async function tabTo(page, selector, limit = 200) {
  for (let i = 0; i < limit; i += 1) {
    await page.keyboard.press('Tab');
    await focusRing(page, `Tab towards ${selector}`);
    if (await page.evaluate((sel) => document.activeElement?.matches(sel) ?? false, selector)) return;
  }
  throw new Error(`check failed: Tab never reached ${selector}`);
}
