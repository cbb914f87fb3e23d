// Accessibility of central's dashboard: axe-core (WCAG 2.1 A and AA rules) run in headless
// Chromium on every screen, in its states, in every UI language. Fails on any serious or
// critical violation and prints rule id, target and help for each.
// Started by tests/browser_central.rs after central.mjs, on the same central and data.
// Env: BASE_URL, CHROMIUM, ANALYST_USER/PASS, ADMIN_USER/PASS, OPERATOR (a registry id).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { axeViolations, launchWithProfile } from './lib.mjs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`environment variable ${k} is not set`);
  return v;
};
const BASE = env('BASE_URL');
const LANGS = ['en', 'es', 'pt'];
const TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
const BLOCKING = new Set(['serious', 'critical']);
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const context = await launchWithProfile(env('CHROMIUM'), { viewport: { width: 1280, height: 860 } });

const failures = [];
let screens = 0;
// Runs axe on the page as it is now. The engine is evaluated through the DevTools protocol,
// so the dashboard's Content-Security-Policy stays as it is for the page's own scripts.
async function audit(page, lang, screen) {
  const htmlLang = await page.evaluate(() => document.documentElement.lang);
  check(htmlLang === lang, `${screen} [${lang}]: <html lang> is ${JSON.stringify(htmlLang)}`);
  const { bad, minor } = await axeViolations(page, axeSource, TAGS, BLOCKING);
  screens += 1;
  console.log(`- ${screen} [${lang}]: ${bad.length} serious/critical, ${minor} minor/moderate rule(s)`);
  for (const v of bad) {
    for (const n of v.nodes) {
      failures.push(`${screen} [${lang}] ${v.impact} ${v.id}: ${n.target.join(' ')} — ${v.help} (${v.helpUrl})`);
    }
  }
}

// Keyboard: Tab alone reaches every visible control of the page, in order, and each one
// shows its focus ring (:focus-visible, at least 2 px).
async function tabWalk(page, lang, screen) {
  const total = await page.evaluate(() => {
    document.activeElement?.blur();
    window.scrollTo(0, 0);
    const all = [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea')]
      .filter((e) => !e.disabled && e.checkVisibility());
    all.forEach((e, i) => e.setAttribute('data-kb', String(i)));
    return all.length;
  });
  const reached = new Set();
  for (let i = 0; i < total + 5 && reached.size < total; i += 1) {
    await page.keyboard.press('Tab');
    const f = await page.evaluate(() => {
      const e = document.activeElement;
      if (!e || e === document.body) return null;
      const st = getComputedStyle(e);
      return { kb: e.getAttribute('data-kb'), tag: e.tagName, name: e.getAttribute('name') || e.textContent.trim().slice(0, 30),
        visible: e.matches(':focus-visible'), outline: st.outlineStyle, width: parseFloat(st.outlineWidth) };
    });
    if (f === null) continue;
    check(f.visible && f.outline !== 'none' && f.width >= 2,
      `${screen} [${lang}]: focused ${f.tag} ${f.name} shows a focus ring (${JSON.stringify(f)})`);
    if (f.kb !== null) reached.add(f.kb);
  }
  check(reached.size === total, `${screen} [${lang}]: Tab reaches all ${total} controls (reached ${reached.size})`);
  console.log(`- ${screen} [${lang}]: Tab reaches all ${total} controls, each with a focus ring`);
}

// Tabs forward until the element matching `selector` has focus (bounded).
async function tabTo(page, selector) {
  for (let i = 0; i < 200; i += 1) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((sel) => document.activeElement?.matches(sel) ?? false, selector)) return;
  }
  throw new Error(`check failed: Tab never reached ${selector}`);
}

async function setLang(page, lang) {
  if ((await page.evaluate(() => document.documentElement.lang)) === lang) return;
  await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/lang') && r.request().method() === 'POST'),
    page.selectOption('select[name=lang]', lang),
  ]);
  await page.waitForFunction((l) => document.documentElement.lang === l, lang);
}

async function login(page, user, pass) {
  await page.goto(`${BASE}/login`);
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', pass);
  await Promise.all([page.waitForURL(/\/cases/), page.click('button.primary')]);
}

async function logout(page) {
  await Promise.all([page.waitForURL(/\/login/), page.click('header button.link')]);
}

try {
  const page = await context.newPage();
  for (const lang of LANGS) {
    await page.setExtraHTTPHeaders({ 'accept-language': lang });

    await page.goto(`${BASE}/login`);
    await audit(page, lang, 'login');
    if (lang === 'en') await tabWalk(page, lang, 'login');
    await page.fill('input[name=user]', env('ANALYST_USER'));
    await page.fill('input[name=password]', 'not-the-password');
    await page.click('button.primary');
    await page.waitForSelector('p.error');
    await audit(page, lang, 'login with an error');

    await login(page, env('ANALYST_USER'), env('ANALYST_PASS'));
    await setLang(page, lang);
    await page.goto(`${BASE}/cases?state=open`);
    await audit(page, lang, 'cases (open)');
    if (lang === 'en') await tabWalk(page, lang, 'cases (open)');
    const open = page.locator('tr.case.open[data-case]').first();
    check(await open.count() === 1, 'an open case is listed');
    const caseId = await open.getAttribute('data-case');
    await page.goto(`${BASE}/cases?state=all`);
    await audit(page, lang, 'cases (all: open, acknowledged, resolved)');
    await page.goto(`${BASE}/cases/${caseId}`);
    await audit(page, lang, 'case (open)');
    if (lang === 'en') {
      // The three decision colours, as the case page draws them, each with its word.
      await page.evaluate(() => {
        const d = document.querySelector('.decision');
        for (const k of ['fast', 'standard', 'inspect']) {
          const c = d.cloneNode(false);
          c.className = `decision ${k}`;
          c.textContent = k.toUpperCase();
          c.removeAttribute('id');
          d.parentNode.appendChild(c);
        }
      });
      await audit(page, lang, 'decision colours FAST, STANDARD, INSPECT');
      // The engine is live: text of 2:1 contrast on this page must be reported.
      await page.evaluate(() => {
        const p = document.createElement('p');
        p.id = 'contrast-probe';
        p.style.cssText = 'color:#aaa;background:#fff;font-size:15px';
        p.textContent = 'low contrast probe';
        document.querySelector('main').appendChild(p);
      });
      const probe = await page.evaluate(() => window.axe.run('#contrast-probe', { runOnly: ['color-contrast'] }));
      check(probe.violations.some((v) => v.id === 'color-contrast'), 'axe reports a 2:1 contrast text');
      console.log('- control: axe reports a 2:1 contrast text as color-contrast');
    }
    // A form with an error: SEAL_REPLACED with a malformed new seal number.
    await page.selectOption('#outcome', 'SEAL_REPLACED');
    await page.fill('#new-seal', 'x');
    await page.fill('form[action$="/resolve"] textarea[name=note]', 'Seal checked at bay 2');
    await page.click('#do-resolve');
    await page.waitForSelector('p.error');
    await audit(page, lang, 'case resolve form with an error');
    if (lang === 'en') {
      await page.goto(`${BASE}/cases/${caseId}`);
      await tabWalk(page, lang, 'case (open)');
      // Acknowledge with the keyboard only: Tab to the note, type, Tab to the button, Enter.
      await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
      await tabTo(page, 'form[action$="/acknowledge"] input[name=note]');
      await page.keyboard.type('Seen; bay 2 informed by phone');
      await tabTo(page, '#do-acknowledge');
      await Promise.all([page.waitForURL(/\/cases\//), page.waitForEvent('load'), page.keyboard.press('Enter')]);
      check(/acknowledged/i.test(await page.locator('#case-state').innerText()), 'case acknowledged by keyboard');
      console.log('- case acknowledged with Tab and Enter only');
      // Resolve with the keyboard: outcome chosen with arrow keys, note typed, Enter.
      await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
      await tabTo(page, '#outcome');
      await page.keyboard.press('ArrowDown');
      await tabTo(page, 'form[action$="/resolve"] textarea[name=note]');
      await page.keyboard.type('Seal checked by the officer; no discrepancy');
      await tabTo(page, '#do-resolve');
      await Promise.all([page.waitForEvent('load'), page.keyboard.press('Enter')]);
      check(/resolved/i.test(await page.locator('#case-state').innerText()), 'case resolved by keyboard');
      check((await page.locator('#case-outcome').innerText()).length > 0, 'outcome shown');
      console.log('- case resolved with Tab, arrow keys and Enter only');
    }
    await page.goto(`${BASE}/gates`);
    await audit(page, lang, 'gates (ok, degraded, stale)');
    if (lang === 'en') await tabWalk(page, lang, 'gates (ok, degraded, stale)');
    await page.goto(`${BASE}/charts?hours=24`);
    await audit(page, lang, 'charts');
    if (lang === 'en') await tabWalk(page, lang, 'charts');
    await page.goto(`${BASE}/programme?hours=24`);
    await audit(page, lang, 'programme');
    if (lang === 'en') await tabWalk(page, lang, 'programme');
    await page.goto(`${BASE}/registry?q=Atl`);
    await audit(page, lang, 'registry search');
    if (lang === 'en') await tabWalk(page, lang, 'registry search');
    await page.goto(`${BASE}/registry/${env('OPERATOR')}`);
    await audit(page, lang, 'operator (analyst)');
    // Which gates applied a registry change is said in words, not by colour alone.
    const marks = await page.locator('td.applied span.gate-yes, td.applied span.gate-no').count();
    check(marks > 0 && await page.locator('td.applied span.sr').count() === marks,
      `operator [${lang}]: every gate's applied state has a word (${marks} marks)`);
    await logout(page);

    await login(page, env('ADMIN_USER'), env('ADMIN_PASS'));
    await setLang(page, lang);
    await page.goto(`${BASE}/registry/${env('OPERATOR')}`);
    await audit(page, lang, 'operator (admin, status form)');
    if (lang === 'en') await tabWalk(page, lang, 'operator (admin, status form)');
    await logout(page);
  }
  await context.close();
  console.log(`axe-core ${JSON.parse(readFileSync(createRequire(import.meta.url).resolve('axe-core/package.json'), 'utf8')).version}, tags ${TAGS.join(',')}: ${screens} screen states checked`);
  if (failures.length > 0) {
    console.error(`${failures.length} serious or critical accessibility violation(s):`);
    for (const f of failures) console.error(`  ${f}`);
    process.exit(1);
  }
  console.log('central dashboard accessibility: no serious or critical violations');
} catch (e) {
  console.error(e);
  for (const f of failures) console.error(`  ${f}`);
  await context.close();
  process.exit(1);
}
