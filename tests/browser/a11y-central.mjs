// Accessibility of central's dashboard: axe-core (WCAG 2.1 A and AA rules) run in headless
// Chromium on every screen, in its states, in every UI language. Fails on any serious or
// critical violation and prints rule id, target and help for each.
// Started by tests/browser_central.rs after central.mjs, on the same central and data.
// Env: BASE_URL, CHROMIUM, ANALYST_USER/PASS, ADMIN_USER/PASS, OPERATOR (a registry id).
import { axeAudit, check, env, launchWithProfile, tabTo, tabWalk } from './lib.mjs';

const BASE = env('BASE_URL');
const LANGS = ['en', 'es', 'pt'];

const context = await launchWithProfile(env('CHROMIUM'), { viewport: { width: 1280, height: 860 } });
const axe = axeAudit();
const audit = (page, lang, screen) => axe.audit(page, lang, screen);

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
    if (lang === 'en') await tabWalk(page, 'login');
    await page.fill('input[name=user]', env('ANALYST_USER'));
    await page.fill('input[name=password]', 'not-the-password');
    await page.click('button.primary');
    await page.waitForSelector('p.error');
    await audit(page, lang, 'login with an error');

    await login(page, env('ANALYST_USER'), env('ANALYST_PASS'));
    await setLang(page, lang);
    await page.goto(`${BASE}/cases?state=open`);
    await audit(page, lang, 'cases (open)');
    if (lang === 'en') await tabWalk(page, 'cases (open)');
    const open = page.locator('tr.case.open[data-case]').first();
    check(await open.count() === 1, 'an open case is listed');
    const caseId = await open.getAttribute('data-case');
    await page.goto(`${BASE}/cases?state=all`);
    await audit(page, lang, 'cases (all: open, acknowledged, resolved)');
    await page.goto(`${BASE}/cases/${caseId}`);
    await audit(page, lang, 'case (open)');
    // The reasons' details are labelled in words, not by the decider's keys (`container:`).
    const details = (await page.locator('ul.reasons small').allInnerTexts()).join(' | ');
    check(details.length > 0 && !/(^|\s)[a-z]+(_[a-z]+)*: /.test(details),
      `case [${lang}]: reason details labelled in words (${details})`);
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
      // The engine is live on this page, and what it finds fails the run.
      await axe.control(page);
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
      await tabWalk(page, 'case (open)');
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
    if (lang === 'en') await tabWalk(page, 'gates (ok, degraded, stale)');
    await page.goto(`${BASE}/charts?hours=24`);
    await audit(page, lang, 'charts');
    if (lang === 'en') await tabWalk(page, 'charts');
    await page.goto(`${BASE}/programme?hours=24`);
    await audit(page, lang, 'programme');
    if (lang === 'en') await tabWalk(page, 'programme');
    await page.goto(`${BASE}/registry?q=Atl`);
    await audit(page, lang, 'registry search');
    if (lang === 'en') await tabWalk(page, 'registry search');
    await page.goto(`${BASE}/registry/${env('OPERATOR')}`);
    await audit(page, lang, 'operator (analyst)');
    // An error page: the users page refused to an analyst.
    const refused = await page.goto(`${BASE}/users`);
    check(refused.status() === 403, `users [${lang}]: refused to an analyst (${refused.status()})`);
    await audit(page, lang, 'error page (users, analyst: 403)');
    await page.goto(`${BASE}/registry/${env('OPERATOR')}`);
    // Which gates applied a registry change is said in words, not by colour alone.
    const marks = await page.locator('td.applied span.gate-yes, td.applied span.gate-no').count();
    check(marks > 0 && await page.locator('td.applied span.sr').count() === marks,
      `operator [${lang}]: every gate's applied state has a word (${marks} marks)`);
    await logout(page);

    await login(page, env('ADMIN_USER'), env('ADMIN_PASS'));
    await setLang(page, lang);
    await page.goto(`${BASE}/registry/${env('OPERATOR')}`);
    await audit(page, lang, 'operator (admin, status form)');
    if (lang === 'en') await tabWalk(page, 'operator (admin, status form)');
    await page.goto(`${BASE}/users`);
    check(await page.locator('#users tr[data-user] form').count() > 0, `users [${lang}]: a form per other user`);
    await audit(page, lang, 'users (admin)');
    if (lang === 'en') await tabWalk(page, 'users (admin)');
    await logout(page);
  }
  await context.close();
  axe.finish('central dashboard');
} catch (e) {
  console.error(e);
  for (const f of axe.failures) console.error(`  ${f}`);
  await context.close();
  process.exit(1);
}
