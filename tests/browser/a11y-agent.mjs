// The agent's screens as an officer works at them, in headless Chromium:
// 1. the keyboard walk of a shift, without a mouse: log in, watch three trucks, confirm
//    one, override one towards INSPECT with a reason, record an inspection result, switch
//    lane, make a manual entry; every focused control shows its focus ring; the INSPECT
//    alert is announced through an ARIA live region;
// 2. axe-core (WCAG 2.1 A and AA rules) over every screen (login, officer and supervisor
//    console, history, a transaction, operator view, an error page) in English, Spanish
//    and Portuguese, in its states: a FAST, a STANDARD and an INSPECT lane, a closed lane,
//    the action forms open and one with an error, and the degraded banners (central
//    unreachable, replica stale, clock untrusted, journal alarm) — fails on any serious or
//    critical violation; the decision colours and banners are checked by axe's contrast
//    rule, not assumed;
// 3. booth readability: the decision word at least 72 CSS px, a shape beside word and
//    colour, no horizontal overflow and nothing over the decision at 1280×720 and 768 px
//    wide; screenshots of both (booth-*.png).
// Started by tests/browser_agent.rs; asks it for trucks and conditions over stdio
// ("@@arrive:<kind>", "@@degrade:<what>") and reads one answer line.
// Env: AGENT_URL, PASSWORD, SCREENS (directory), CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { join } from 'node:path';
import { axeAudit, check, CHROMIUM_ARGS, focusRing, stdioQuestions, tabTo, tabWalk } from './lib.mjs';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (!v) throw new Error(`environment variable ${k} is not set`);
  return v;
};
const BASE = env('AGENT_URL');
const PASSWORD = env('PASSWORD');
const SCREENS = env('SCREENS');
// One officer per language (accounts made by tests/browser_agent.rs).
const OFFICERS = { en: 'ana.officer', es: 'sofia.oficial', pt: 'joao.agente' };
const SUPERVISORS = { en: 'sam.supervisor', es: 'sara.supervisora', pt: 'paulo.supervisor' };
const LANGS = Object.keys(OFFICERS);
// The decision word's smallest size: readable from 2 m (docs/user-guide.md).
const WORD_PX = 72;
const BOOTH = [{ width: 1280, height: 720, name: '1280x720' }, { width: 768, height: 1024, name: '768' }];

const ask = stdioQuestions();

const chrome = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  args: [...CHROMIUM_ARGS, '--autoplay-policy=no-user-gesture-required'],
});

const axe = axeAudit();
const audit = (page, lang, screen) => axe.audit(page, lang, screen);

const focused = (page, selector) => page.evaluate((sel) => document.activeElement?.matches(sel) ?? false, selector);
const decision = (page) => page.getAttribute('#lane-live', 'data-decision');
const txOf = (page) => page.getAttribute('#lane-live', 'data-tx');
async function waitDecision(page, want, notTx) {
  await page.waitForFunction(([w, t]) => {
    const p = document.querySelector('#lane-live');
    return p && p.dataset.decision === w && p.dataset.tx && p.dataset.tx !== t;
  }, [want, notTx ?? ''], { timeout: 20000 });
}

async function newContext(lang, viewport = { width: 1280, height: 720 }) {
  const ctx = await chrome.newContext({ viewport, extraHTTPHeaders: { 'accept-language': lang } });
  ctx.setDefaultTimeout(15000);
  return ctx;
}

async function login(ctx, name) {
  const page = await ctx.newPage();
  await page.goto(`${BASE}/login`);
  await page.fill('input[name="name"]', name);
  await page.fill('input[name="password"]', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.press('input[name="password"]', 'Enter')]);
  if (page.url().includes('/login')) throw new Error(`login as ${name} failed`);
  return page;
}

// The lane state is said by word and shape, not by colour alone (the first decision box of
// the console: a closed lane's block comes before its last decision).
async function stateByWordAndShape(page, lang, want) {
  const s = await page.evaluate(() => {
    const d = document.querySelector('#lane-live .decision');
    const svg = d.querySelector('svg.shape');
    const shape = !svg ? null : svg.querySelector('rect') ? 'no-entry'
      : svg.querySelector('circle') ? 'circle' : svg.querySelector('polygon')?.getAttribute('points').split(' ').length;
    return { word: d.querySelector('.word')?.textContent.trim(), shape, hidden: svg?.getAttribute('aria-hidden') };
  });
  const shapes = { FAST: 'circle', STANDARD: 4, INSPECT: 3, CLOSED: 'no-entry' };
  check(s.word && s.word.length > 2 && s.shape === shapes[want] && s.hidden === 'true',
    `${want} [${lang}]: said by the word "${s.word}" and its shape (${s.shape}), not by colour alone`);
}

// Every lane card of the operator view that shows a state shows it by a word and a shape.
async function gridByWordAndShape(page, lang, screen) {
  const cards = await page.$$eval('.lanecard .decision', (ds) => ds.map((d) => ({
    word: d.querySelector('.word')?.textContent.trim() ?? '',
    shape: !!d.querySelector('svg.shape[aria-hidden="true"]'),
  })));
  check(cards.length > 0 && cards.every((c) => c.word.length > 2 && c.shape),
    `${screen} [${lang}]: each of ${cards.length} lane state(s) said by word and shape (${cards.map((c) => c.word).join(', ')})`);
}

// The booth layouts: no horizontal overflow, the decision box inside the viewport with its
// word inside it and nothing drawn over it, the word at least WORD_PX.
async function booth(page, lang, state) {
  for (const v of BOOTH) {
    await page.setViewportSize({ width: v.width, height: v.height });
    await page.waitForTimeout(150);
    const r = await page.evaluate(() => {
      const de = document.documentElement;
      const d = document.querySelector('#lane-live .decision');
      const box = d.getBoundingClientRect();
      const word = d.querySelector('.word').getBoundingClientRect();
      const over = [];
      for (const e of document.querySelectorAll('body *')) {
        if (d.contains(e) || e.contains(d) || !e.checkVisibility() || e.classList.contains('sr-only')) continue;
        const q = e.getBoundingClientRect();
        if (q.width === 0 || q.height === 0) continue;
        if (q.left < box.right - 0.5 && q.right > box.left + 0.5 && q.top < box.bottom - 0.5 && q.bottom > box.top + 0.5) {
          over.push(`${e.tagName.toLowerCase()}.${e.className}`);
        }
      }
      const wide = [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > de.clientWidth + 0.5 && e.checkVisibility() && !e.classList.contains('sr-only'))
        .map((e) => `${e.tagName.toLowerCase()}.${e.className}`).slice(0, 5);
      return {
        overflow: de.scrollWidth - de.clientWidth, wide, over,
        inside: word.left >= box.left - 0.5 && word.right <= box.right + 0.5 && word.top >= box.top - 0.5 && word.bottom <= box.bottom + 0.5,
        inView: box.left >= 0 && box.right <= de.clientWidth + 0.5,
        px: parseFloat(getComputedStyle(d.querySelector('.word')).fontSize),
      };
    });
    check(r.overflow <= 0 && r.wide.length === 0, `${state} [${lang}] at ${v.name}: no horizontal overflow (${r.overflow} px; ${r.wide.join(', ')})`);
    check(r.inView && r.inside && r.over.length === 0, `${state} [${lang}] at ${v.name}: the decision sits in view, nothing over it (${r.over.join(', ')})`);
    check(r.px >= WORD_PX, `${state} [${lang}] at ${v.name}: decision word ${r.px} px (at least ${WORD_PX})`);
    if (lang === 'en' || (lang === 'es' && state === 'INSPECT')) {
      await page.screenshot({ path: join(SCREENS, `booth-${v.name}-${state.toLowerCase()}-${lang}.png`) });
    }
  }
  await page.setViewportSize({ width: 1280, height: 720 });
}

try {
  // --- 1. the keyboard walk of a shift ------------------------------------------------
  const kctx = await newContext('en');
  const k = await kctx.newPage();
  await k.goto(`${BASE}/login`);
  // autofocus is applied at the page's next rendering update, not at once.
  await k.waitForFunction(() => document.activeElement?.matches('input[name="name"]') ?? false, null, { timeout: 5000 })
    .catch(() => {});
  check(await focused(k, 'input[name="name"]'), 'the login page starts in the user name field');
  await k.keyboard.type(OFFICERS.en);
  await tabTo(k, 'input[name="password"]');
  await k.keyboard.type(PASSWORD);
  await Promise.all([k.waitForURL(/\/console/), k.keyboard.press('Enter')]);
  check(true, 'logged in with the keyboard only');

  // Three trucks: two FAST, then one with a tampered e-seal.
  await ask('@@arrive:fast');
  await waitDecision(k, 'FAST');
  const first = await txOf(k);
  // Confirm the first truck's lane: C, Enter.
  await k.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  await k.keyboard.press('c');
  check(await focused(k, '#f-confirm button'), 'C puts the focus on Confirm lane');
  await focusRing(k, 'Confirm lane');
  await k.keyboard.press('Enter');
  await k.waitForSelector('#msg.ok');
  check((await k.textContent('#msg')).includes('CONFIRM'), 'the lane is confirmed by keyboard');
  await ask('@@arrive:fast');
  await waitDecision(k, 'FAST', first);
  const second = await txOf(k);
  check(second !== first, 'two trucks watched, each FAST');

  // Override the lane's current truck towards INSPECT: O, arrow keys, Tab, type, Enter.
  await k.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  await k.keyboard.press('o');
  check(await focused(k, '#f-override select[name="to"]'), 'O opens the override form at "Send to"');
  await focusRing(k, 'override: Send to');
  check(await k.inputValue('#f-override select[name="to"]') === 'INSPECT', 'INSPECT is the first choice');
  await tabTo(k, '#f-override select[name="reason"]');
  await k.keyboard.press('ArrowDown');
  check(await k.inputValue('#f-override select[name="reason"]') !== '', 'a reason chosen with the arrow keys');
  await tabTo(k, '#f-override input[name="note"]');
  await k.keyboard.type('driver would not open the cab');
  await tabTo(k, '#f-override button[type="submit"]');
  await k.keyboard.press('Enter');
  await k.waitForSelector('#msg.ok');
  await k.waitForFunction((t) => {
    const p = document.querySelector('#lane-live');
    return p.dataset.tx === t && p.dataset.decision === 'INSPECT';
  }, second);
  check(true, 'the current truck overridden FAST → INSPECT with a reason, by keyboard');

  // A lane turned INSPECT by an override is announced too.
  await k.waitForFunction(() => Number(document.querySelector('#announce').dataset.count || 0) >= 1);
  // The third truck: INSPECT, announced through the live region.
  const announcedBefore = Number(await k.getAttribute('#announce', 'data-count') || 0);
  await ask('@@arrive:tampered');
  await waitDecision(k, 'INSPECT', second);
  await k.waitForFunction((n) => {
    const a = document.querySelector('#announce');
    return Number(a.dataset.count || 0) > n && a.textContent !== '';
  }, announcedBefore);
  const region = await k.evaluate(() => {
    const a = document.querySelector('#announce');
    return { role: a.getAttribute('role'), text: a.textContent, inLive: !!a.closest('#live') };
  });
  check(region.role === 'alert' && !region.inLive && /INSPECT/.test(region.text) && /L1/.test(region.text),
    `the INSPECT alert is announced through an ARIA live region: "${region.text}"`);
  // The contacts card, from typed data: the party, its status, tel: and mailto: links.
  const card = await k.evaluate(() => {
    const li = document.querySelector('li.r-aeo_priority_inspection');
    if (!li) return null;
    return {
      cards: li.querySelectorAll('.party-card').length,
      tel: li.querySelector('.party-card a[href^="tel:+"]')?.getAttribute('href'),
      mail: li.querySelector('.party-card a[href^="mailto:"]')?.getAttribute('href'),
      status: li.querySelector('.party-card dd.ok')?.textContent,
      raw: /contact\.|=/.test(li.textContent),
    };
  });
  check(card && card.cards === 2 && /^tel:\+\d+$/.test(card.tel) && /^mailto:.+@/.test(card.mail) && card.status === 'ACTIVE' && !card.raw,
    `the INSPECT reason shows the contact as a card (${JSON.stringify(card)})`);
  await k.screenshot({ path: join(SCREENS, 'booth-contact-card.png'), fullPage: true });

  // Record the inspection result: I, arrow keys, Tab, type, Enter.
  await k.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  await k.keyboard.press('i');
  check(await focused(k, '#f-inspection select[name="result"]'), 'I opens the inspection result form');
  check(await k.inputValue('#f-inspection select[name="result"]') === 'SEAL_INTACT', 'outcome: seal intact');
  await tabTo(k, '#f-inspection input[name="note"]');
  await k.keyboard.type('seal checked by hand at bay 1');
  await tabTo(k, '#f-inspection button[type="submit"]');
  const msgBefore = await k.textContent('#msg');
  await k.keyboard.press('Enter');
  await k.waitForFunction((m) => document.querySelector('#msg').className === 'ok' && document.querySelector('#msg').textContent !== m, msgBefore);
  check((await k.textContent('#msg')).includes('INSPECTION_RESULT'), 'the inspection result is recorded by keyboard');
  // Escape closes the form being worked in.
  await k.keyboard.press('i');
  await k.keyboard.press('Escape');
  check(!(await k.evaluate(() => document.querySelector('#f-inspection').closest('details').open)) && await focused(k, '#f-inspection ~ summary, details:has(#f-inspection) > summary'),
    'Escape closes the inspection form and returns to its summary');

  // Switch lane with its number key, then a manual entry there.
  await k.evaluate(() => document.activeElement?.blur());
  await Promise.all([k.waitForURL(/lane=L2/), k.keyboard.press('2')]);
  check((await k.getAttribute('#actions', 'data-lane')) === 'L2', 'key 2 switches to lane L2');
  await k.keyboard.press('m');
  check(await focused(k, '#f-manual select[name="kind"]'), 'M opens the manual entry form');
  await tabTo(k, '#f-manual input[name="number"]');
  await k.keyboard.type('CSQU3054383');
  await tabTo(k, '#f-manual button[type="submit"]');
  await k.keyboard.press('Enter');
  await k.waitForSelector('#msg.ok');
  check((await k.textContent('#msg')).includes('MANUAL_ENTRY'), 'a manual entry is recorded by keyboard on lane L2');
  await kctx.close();

  // --- 2. every screen, every language, every state -----------------------------------
  for (const lang of LANGS) {
    const ctx = await newContext(lang);
    const p = await ctx.newPage();
    await p.goto(`${BASE}/login`);
    await audit(p, lang, 'login');
    if (lang === 'en') await tabWalk(p, 'login');
    await p.fill('input[name="name"]', OFFICERS[lang]);
    await p.fill('input[name="password"]', 'not-the-password');
    await p.press('input[name="password"]', 'Enter');
    await p.waitForSelector('p.error');
    await audit(p, lang, 'login with an error');
    await ctx.close();
  }

  const pages = {};
  for (const lang of LANGS) {
    pages[lang] = await login(await newContext(lang), OFFICERS[lang]);
  }
  // L1 shows the tampered truck: INSPECT with the priority contact card.
  for (const lang of LANGS) {
    const p = pages[lang];
    await p.goto(`${BASE}/console?lane=L1`);
    check(await decision(p) === 'INSPECT', `[${lang}] lane L1 shows INSPECT`);
    await audit(p, lang, 'console INSPECT (seal exception, contact card)');
    await stateByWordAndShape(p, lang, 'INSPECT');
    await booth(p, lang, 'INSPECT');
  }
  // A truck of `kind` arrives; every language's console shows `decision`, audited as `what`.
  const arrives = async (kind, decision, what) => {
    const last = await txOf(pages.en);
    await ask(`@@arrive:${kind}`);
    for (const lang of LANGS) {
      const p = pages[lang];
      await waitDecision(p, decision, last);
      await audit(p, lang, what);
      await stateByWordAndShape(p, lang, decision);
      await booth(p, lang, decision);
    }
  };
  await arrives('fast', 'FAST', 'console FAST');
  await tabWalk(pages.en, 'console FAST');
  await arrives('undeclared', 'STANDARD', 'console STANDARD (no advance data)');
  // The three decision colours and the closed lane's, side by side, with the word on each
  // (contrast by axe).
  await pages.en.evaluate(() => {
    const d = document.querySelector('#lane-live .decision');
    for (const k of ['d-fast', 'd-standard', 'd-inspect', 'd-closed']) {
      const c = d.cloneNode(true);
      c.className = `decision ${k}`;
      d.parentNode.appendChild(c);
      const s = c.cloneNode(true);
      s.className = `decision small ${k}`;
      d.parentNode.appendChild(s);
    }
  });
  await audit(pages.en, 'en', 'decision colours FAST, STANDARD, INSPECT, lane CLOSED (large and small)');
  // The engine is live on this page, and what it finds fails the run.
  await axe.control(pages.en);

  // The action forms open, the override with an error (no reason given).
  for (const lang of LANGS) {
    const p = pages[lang];
    await p.goto(`${BASE}/console?lane=L1`);
    await p.evaluate(() => document.querySelectorAll('#actions details').forEach((d) => { d.open = true; }));
    await p.selectOption('#f-override select[name="to"]', 'INSPECT');
    await p.press('#f-override select[name="to"]', 'Tab');
    await p.locator('#f-override button[type="submit"]').focus();
    await p.keyboard.press('Enter');
    await p.waitForSelector('#msg.error');
    await audit(p, lang, 'console, action forms open, override refused (no reason)');
    if (lang === 'en') await tabWalk(p, 'console, action forms open');
    await p.goto(`${BASE}/console/history`);
    await audit(p, lang, 'history');
    if (lang === 'en') await tabWalk(p, 'history');
    const tx = await p.getAttribute('table.history tbody tr td a', 'href');
    await p.goto(`${BASE}${tx}`);
    await audit(p, lang, 'transaction');
    await p.goto(`${BASE}/operator`);
    await audit(p, lang, 'operator view');
    if (lang === 'en') await tabWalk(p, 'operator view');
  }
  // --- a supervisor's console; a lane closed ------------------------------------------
  const sups = {};
  for (const lang of LANGS) {
    const p = await login(await newContext(lang), SUPERVISORS[lang]);
    sups[lang] = p;
    await p.goto(`${BASE}/console?lane=L2`);
    await p.evaluate(() => document.querySelectorAll('#actions details').forEach((d) => { d.open = true; }));
    check(await p.locator('#f-lane').count() === 1, `[${lang}] a supervisor has the lane control form`);
    await audit(p, lang, 'console (supervisor), every action form open with lane control');
    if (lang === 'en') await tabWalk(p, 'console (supervisor), every action form open');
  }
  // Close lane L2 with the keyboard: L, the reason, Tab to "Close lane", Enter.
  const sup = sups.en;
  await sup.goto(`${BASE}/console?lane=L2`);
  await sup.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  await sup.keyboard.press('l');
  check(await focused(sup, '#f-lane input[name="reason"]'), 'L opens the lane control form at its reason');
  await sup.keyboard.type('loop repair');
  await tabTo(sup, '#f-lane button[value="close"]');
  await sup.keyboard.press('Enter');
  await sup.waitForSelector('#lane-live[data-closed="true"]');
  check(true, 'lane L2 closed by keyboard');
  for (const lang of LANGS) {
    for (const [who, p] of [['supervisor', sups[lang]], ['officer', pages[lang]]]) {
      await p.goto(`${BASE}/console?lane=L2`);
      await p.waitForSelector('#lane-live[data-closed="true"]');
      await audit(p, lang, `console (${who}), lane closed`);
    }
    await stateByWordAndShape(sups[lang], lang, 'CLOSED');
    await booth(sups[lang], lang, 'CLOSED');
    await pages[lang].goto(`${BASE}/operator`);
    await pages[lang].waitForSelector('.lanecard[data-lane="L2"] [data-closed="true"]');
    await gridByWordAndShape(pages[lang], lang, 'operator view, a lane closed');
    await audit(pages[lang], lang, 'operator view, a lane closed');
  }
  // An error page, in the officer's language: a transaction the journal does not hold (a
  // well-formed id), or an id that is none.
  for (const lang of LANGS) {
    const id = lang === 'en' ? 'no-such-transaction' : '00000000-0000-4000-8000-000000000000';
    const r = await pages[lang].goto(`${BASE}/console/tx/${id}`);
    check(r.status() === 404 && (await pages[lang].locator('main p.error').textContent()).includes(id)
      && await pages[lang].locator('main a[href="/console/history"]').count() === 1,
    `[${lang}] transaction ${id}: a 404 page naming it, with the way back to the history (${r.status()})`);
    await audit(pages[lang], lang, 'error page (unknown transaction)');
  }
  // Reopened, so that the degraded states below are those of open lanes.
  await sup.goto(`${BASE}/console?lane=L2`);
  await sup.evaluate(() => { document.querySelector('#f-lane').closest('details').open = true; });
  await sup.fill('#f-lane input[name="reason"]', 'loop repaired');
  await sup.click('#f-lane button[value="reopen"]');
  await sup.waitForSelector('#lane-live[data-closed="false"]');

  const opCtx = await newContext('en');
  const op = await login(opCtx, 'terminal.ops');
  await audit(op, 'en', 'operator view (operator account)');
  await gridByWordAndShape(op, 'en', 'operator view (operator account)');
  for (const v of BOOTH) {
    await op.setViewportSize({ width: v.width, height: v.height });
    const o = await op.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check(o <= 0, `operator view at ${v.name}: no horizontal overflow (${o} px)`);
    if (v.width === 768) await op.screenshot({ path: join(SCREENS, `booth-${v.name}-operator-en.png`) });
  }

  // --- 3. degraded: central unreachable, replica stale, journal alarm ------------------
  check(await ask('@@degrade:central') === 'ok', 'central is unreachable');
  check(await ask('@@degrade:stale') === 'ok', 'the replica is stale');
  check(await ask('@@degrade:clock') === 'ok', "the gate's clock is 10 s ahead of central's");
  await pages.en.goto(`${BASE}/console?lane=L1`);
  const last = await txOf(pages.en);
  await ask('@@degrade:journal');
  await ask('@@arrive:fast');
  check(await ask('@@degrade:journal-alarm') === 'ok', 'the journal alarm is up');
  for (const lang of LANGS) {
    const p = pages[lang];
    await p.goto(`${BASE}/console?lane=L1`);
    // The journal refused the truck's records: the panel shows the decision it was held with.
    await p.waitForFunction((t) => {
      const d = document.querySelector('#lane-live');
      return d && d.dataset.decision === 'STANDARD' && d.dataset.tx !== t && document.querySelectorAll('#lane-live .banner li').length >= 4;
    }, last, { timeout: 20000 });
    const items = await p.$$eval('#lane-live .banner li', (ls) => ls.length);
    check(items >= 4 && await p.locator('#lane-live .banner li.clock').count() === 1,
      `[${lang}] the banner lists the journal alarm, the stale replica, central and the clock (${items} items)`);
    await audit(p, lang, 'console with banners: journal alarm, replica stale, central unreachable, clock untrusted');
    await booth(p, lang, 'DEGRADED');
    await p.goto(`${BASE}/operator`);
    await audit(p, lang, 'operator view, degraded');
    await gridByWordAndShape(p, lang, 'operator view, degraded');
  }
  await op.reload();
  await audit(op, 'en', 'operator view, degraded (operator account)');

  await chrome.close();
  axe.finish('agent screens');
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  for (const f of axe.failures) console.error(`  ${f}`);
  await chrome.close().catch(() => {});
  process.exit(1);
}
