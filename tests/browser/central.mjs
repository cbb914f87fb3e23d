// Central's dashboard in headless Chromium (playwright-core, Debian's chromium).
// Started by tests/browser_central.rs, which runs central and ingests a day of traffic.
// Env: BASE_URL, CHROMIUM, ANALYST_USER/PASS, ADMIN_USER/PASS, AGENT_TOKEN, LIVE_BATCH
// (an IngestBatch JSON file with an INSPECT / SEAL_MISMATCH decision), SUSPEND_OPERATOR,
// SCREENS (directory for screenshots).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { check, env, launchWithProfile } from './lib.mjs';

const BASE = env('BASE_URL');
const SCREENS = env('SCREENS');
const step = (s) => console.log(`- ${s}`);

const context = await launchWithProfile(env('CHROMIUM'), { viewport: { width: 1280, height: 860 }, locale: 'en-GB' });
const shot = async (page, name, fullPage = false) => {
  await page.screenshot({ path: join(SCREENS, `central-${name}.png`), fullPage });
  step(`screenshot central-${name}.png`);
};

async function login(page, user, pass) {
  await page.goto(`${BASE}/cases`);
  check(page.url().includes('/login'), 'no session: sent to the login page');
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', pass);
  await Promise.all([page.waitForURL(/\/cases/), page.click('button.primary')]);
}

try {
  const page = await context.newPage();

  // 1. Log in (a wrong password first).
  await page.goto(`${BASE}/login`);
  await shot(page, 'login');
  await page.fill('input[name=user]', env('ANALYST_USER'));
  await page.fill('input[name=password]', 'not-the-password');
  await page.click('button.primary');
  check(await page.locator('p.error').isVisible(), 'a wrong password is refused with a message');
  await login(page, env('ANALYST_USER'), env('ANALYST_PASS'));
  step('analyst logged in');

  // 2. The open exceptions queue is live: a seal exception ingested now appears < 2 s.
  await page.goto(`${BASE}/cases?state=open`);
  await page.waitForFunction(() => document.body.getAttribute('data-live') === 'on');
  const before = await page.locator('tr[data-case]').count();
  const batch = readFileSync(env('LIVE_BATCH'), 'utf8');
  const t0 = Date.now();
  const res = await fetch(`${BASE}/api/v1/agents/PORT1-G1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${env('AGENT_TOKEN')}` },
    body: batch,
  });
  check(res.ok, `ingest accepted (${res.status})`);
  await page.waitForFunction((n) => document.querySelectorAll('tr[data-case]').length > n, before, { timeout: 2000 });
  const elapsed = Date.now() - t0;
  console.log(`  new case visible ${elapsed} ms after the ingest was sent`);
  check(elapsed < 2000, `case appeared within 2 s (${elapsed} ms)`);
  const newRow = page.locator('tr.new[data-case]').first();
  check(await newRow.locator('td.subject').innerText().then((t) => /seal/i.test(t)), 'the new row is the seal mismatch');
  await page.waitForTimeout(400);
  await shot(page, 'exceptions');
  const caseId = await newRow.getAttribute('data-case');

  // 3. Acknowledge, then resolve with outcome and notes; the history shows each step.
  await page.goto(`${BASE}/cases/${caseId}`);
  check(await page.locator('.decision.inspect').isVisible(), 'INSPECT shown large');
  check((await page.locator('ul.reasons').innerText()).includes('does not match the declared seal'), 'reason in plain language');
  check(await page.locator('table.reads tr').count() >= 5, 'reads listed with their source');
  await page.fill('form[action$="/acknowledge"] input[name=note]', 'Seen; officer at bay 3 informed');
  await Promise.all([page.waitForLoadState('load'), page.click('#do-acknowledge')]);
  check((await page.locator('#case-state').innerText()).match(/acknowledged/i), 'state acknowledged');
  await page.selectOption('#outcome', 'SEAL_REPLACED');
  check(await page.locator('#new-seal').isVisible(), 'new seal asked for SEAL_REPLACED');
  await page.fill('#new-seal', 'x');
  await page.fill('form[action$="/resolve"] textarea[name=note]', 'Original seal cut at export; re-sealed under supervision');
  await page.click('#do-resolve');
  await page.waitForSelector('p.error');
  check((await page.locator('p.error').innerText()).includes('new seal number'), 'an invalid new seal number is refused');
  await page.selectOption('#outcome', 'SEAL_REPLACED');
  await page.fill('#new-seal', 'EU 7734410');
  await page.fill('form[action$="/resolve"] textarea[name=note]', 'Original seal cut at export; re-sealed under supervision');
  await Promise.all([page.waitForLoadState('load'), page.click('#do-resolve')]);
  check((await page.locator('#case-state').innerText()).match(/resolved/i), 'state resolved');
  check((await page.locator('#case-outcome').innerText()).includes('EU7734410'), 'outcome with the new seal');
  const history = await page.locator('table.history tbody tr').allInnerTexts();
  const mine = history.filter((r) => r.includes(env('ANALYST_USER')));
  check(mine.length >= 2, `history shows acknowledge and resolve by the analyst: ${JSON.stringify(history)}`);
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, 'case', true);

  // 4. An analyst may not change the registry: no form, and a direct POST is 403.
  const opId = env('SUSPEND_OPERATOR');
  await page.goto(`${BASE}/registry/${opId}`);
  check(await page.locator('#admin-only').isVisible(), 'analyst sees the admin-only note');
  check(await page.locator('#do-status').count() === 0, 'analyst has no status button');
  const forbidden = await page.evaluate(async (op) => {
    const csrf = document.querySelector('meta[name=csrf-token]').content;
    const r = await fetch(`/registry/${op}/status`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `csrf=${csrf}&status=SUSPENDED&reason=test`,
    });
    return r.status;
  }, opId);
  check(forbidden === 403, `analyst's status change refused (${forbidden})`);

  // 5. A forged cross-site POST: a page on another site (localhost vs 127.0.0.1) submits a
  //    form to central. The CSRF layer refuses it and SameSite keeps the cookie home.
  const other = BASE.replace('127.0.0.1', 'localhost');
  const evil = await context.newPage();
  await evil.goto(`${other}/login`);
  const forged = evil.waitForResponse((r) => r.url().startsWith(BASE) && r.request().method() === 'POST');
  await evil.evaluate(({ base, id }) => {
    const f = document.createElement('form');
    f.method = 'POST';
    f.action = `${base}/cases/${id}/assign`;
    const i = document.createElement('input');
    i.name = 'assignee'; i.value = 'bea.costa';
    f.appendChild(i);
    document.body.appendChild(f);
    f.submit();
  }, { base: BASE, id: caseId });
  const forgedRes = await forged;
  check(forgedRes.status() === 403, `forged cross-site POST refused (${forgedRes.status()})`);
  await evil.close();
  await page.goto(`${BASE}/cases/${caseId}`);
  check(!(await page.locator('.casehead').innerText()).includes('bea.costa'), 'the forged assignment did not happen');

  // 6. Gate health: the gate without heartbeats stands out as stale.
  await page.goto(`${BASE}/gates`);
  check(await page.locator('article.gate.stale[data-gate="PORT1-G3"]').isVisible(), 'stale gate highlighted');
  check(await page.locator('article.gate.degraded[data-gate="PORT1-G2"]').isVisible(), 'degraded gate marked');
  const reloaded = await page.locator('article[data-gate="PORT1-G1"] dd.config').innerText();
  check(reloaded.includes('default-2025 → port1-2026') && reloaded.includes(': 2'),
    `the live configuration change is shown on the gate (${reloaded})`);
  const revoked = page.locator('article.gate.revoked[data-gate="PORT1-G4"]');
  check(await revoked.isVisible(), 'revoked gate marked');
  check(/revoked/i.test(await revoked.innerText()), 'the revoked gate says so in words, not by colour alone');
  const closedLane = await page.locator('article[data-gate="PORT1-G2"] .closed-lane[data-lane="L2"]').innerText();
  check(closedLane.includes('CLOSED') && closedLane.includes('loop repair'), 'the closed lane is listed with its reason');
  const g2clock = await page.locator('article[data-gate="PORT1-G2"] dd.clock').innerText();
  check(g2clock.includes('gate ahead by 3.2 s') && g2clock.includes('UNTRUSTED'), `the measured offset and its trust are in words (${g2clock})`);
  const g1clock = await page.locator('article[data-gate="PORT1-G1"] dd.clock').innerText();
  check(g1clock.includes('gate ahead by 0.0 s') && g1clock.includes('within bound'), `a trusted clock says so (${g1clock})`);
  await shot(page, 'gates');

  // 7. Charts render as SVG with data.
  await page.goto(`${BASE}/charts?hours=24`);
  const bars = await page.locator('figure.chart svg rect.bar').count();
  check(bars > 20, `charts have bars (${bars})`);
  check(await page.locator('figure.chart svg polyline.line').count() >= 2, 'rate lines drawn');
  await shot(page, 'charts');

  // 8. Programme benefit figures, with a CSV export.
  await page.goto(`${BASE}/programme?hours=24`);
  const rows = await page.locator('#benefits tbody tr').count();
  check(rows === 2, 'AEO and non-AEO rows');
  const csv = await page.evaluate(async () => (await fetch('/programme.csv?hours=24')).text());
  check(csv.startsWith('group,key,name,transactions') && csv.includes('traffic,AEO'), 'CSV export');
  await shot(page, 'programme');

  // 9. The admin suspends an operator with a reason; the registry page shows it.
  await page.click('button.link'); // log out
  await page.waitForURL(/\/login/);
  await login(page, env('ADMIN_USER'), env('ADMIN_PASS'));
  // 9a. The admin disables a staff account on the Users page; the list says so.
  await page.goto(`${BASE}/users`);
  const bea = page.locator('tr[data-user="bea.costa"]');
  check(/^active$/i.test((await bea.locator('td').nth(2).innerText()).trim()), 'bea.costa active before');
  check(await page.locator(`tr[data-user="${env('ADMIN_USER')}"] form`).count() === 0, 'no controls on one\'s own account');
  await bea.locator('select[name=state]').selectOption('disabled');
  await Promise.all([page.waitForURL(/\/users$/), bea.locator('button').click()]);
  check(/^disabled$/i.test((await page.locator('tr[data-user="bea.costa"] td').nth(2).innerText()).trim()), 'bea.costa disabled');
  await shot(page, 'users');
  // 9b. The operator's status change.
  await page.goto(`${BASE}/registry?q=Atl`);
  await page.click(`a[href="/registry/${opId}"]`);
  await page.selectOption('#new-status', 'SUSPENDED');
  await page.fill('#status-reason', 'Post-audit: access control findings at the Leixões warehouse');
  await Promise.all([page.waitForLoadState('load'), page.click('#do-status')]);
  check((await page.locator('#op-status').innerText()).includes('SUSPENDED'), 'status shows SUSPENDED');
  check((await page.locator('#status-history').innerText()).includes('access control findings'), 'history shows the reason');
  await shot(page, 'registry');

  // 10. Language per user: Spanish for the admin.
  const langPost = page.waitForResponse((r) => r.url().endsWith('/lang') && r.request().method() === 'POST');
  const back = page.waitForResponse((r) => r.url().includes('/registry/') && r.request().method() === 'GET');
  await page.selectOption('select[name=lang]', 'es');
  check((await langPost).status() === 303, 'language saved');
  await back;
  await page.waitForLoadState('load');
  check((await page.locator('h2').first().innerText()).includes('Historial'), 'back on the page, in Spanish');
  await page.goto(`${BASE}/cases?state=all`);
  check((await page.locator('header nav').innerText()).includes('Excepciones'), 'Spanish navigation');
  check((await page.locator('td.subject').first().innerText()).length > 0, 'reasons present');
  await shot(page, 'exceptions-es');

  console.log('central dashboard: all checks passed');
  await context.close();
} catch (e) {
  console.error(e);
  await context.close();
  process.exit(1);
}
