// The AEO programme portal in headless Chromium (playwright-core, Debian's chromium).
// Started by central/tests/browser_portal.rs, which runs central on 127.0.0.1 with two
// admins. Env: BASE_URL, CHROMIUM, OPERATOR, OFFICER_USER, CERTIFIER_USER, STAFF_PASS,
// SCREENS (directory for screenshots).
// A company registers itself, an officer confirms it, the company fills the
// self-assessment and applies; the officer reviews, visits, records one required change
// and one recommendation and validates; the company answers the change; a second admin
// certifies. Every portal screen is photographed and checked with axe-core (WCAG 2.1 A
// and AA; any serious or critical violation fails the walk) on the way.
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
const OP = env('OPERATOR');
const SCREENS = env('SCREENS');
const COMPANY = ['acme.export', 'acme company passphrase'];
const step = (s) => console.log(`- ${s}`);
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const context = await launchWithProfile(env('CHROMIUM'), { viewport: { width: 1280, height: 860 }, locale: 'en-GB' });
const page = await context.newPage();
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const failures = [];
const shot = async (name) => {
  await page.screenshot({ path: join(SCREENS, `portal-${name}.png`), fullPage: true });
  const { bad } = await axeViolations(page, axeSource,
    ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'], new Set(['serious', 'critical']));
  for (const v of bad) {
    for (const n of v.nodes) failures.push(`${name}: ${v.impact} ${v.id}: ${n.target.join(' ')} — ${v.help}`);
  }
  step(`screenshot portal-${name}.png (${bad.length} serious/critical accessibility rule(s))`);
};

async function loginAs(user, pass, lands) {
  await context.clearCookies();
  await page.goto(`${BASE}/login`);
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', pass);
  await Promise.all([page.waitForURL(lands), page.click('button.primary')]);
}
const officer = () => loginAs(env('OFFICER_USER'), env('STAFF_PASS'), /\/cases/);
const company = () => loginAs(COMPANY[0], COMPANY[1], /\/portal$/);
const file = `${BASE}/applications/${OP}`;

async function officerAction(action, fields = {}) {
  const form = page.locator(`form[data-action="${action}"]`);
  for (const [name, value] of Object.entries(fields)) {
    const field = form.locator(`[name="${name}"]`);
    if ((await field.evaluate((e) => e.tagName)) === 'SELECT') await field.selectOption(value);
    else await field.fill(value);
  }
  await Promise.all([page.waitForURL(file), form.locator('button').click()]);
  step(`officer: ${action}`);
}

async function status() {
  return page.locator('#app-status').getAttribute('data-status');
}

try {
  // 1. Self-registration.
  await page.goto(`${BASE}/portal/register`);
  await shot('register');
  await page.fill('input[name=name]', 'Acme Export');
  await page.fill('input[name=operator]', OP);
  await page.selectOption('select[name=kind]', 'EXPORTER');
  await page.fill('input[name=user]', COMPANY[0]);
  await page.fill('input[name=password]', COMPANY[1]);
  await page.click('button.primary');
  await page.locator('#registered').waitFor();
  await company();
  check(await page.locator('#pending').isVisible(), 'waiting for confirmation is shown');
  await shot('pending');

  // 2. The officer confirms it from the queue.
  await officer();
  await page.goto(`${BASE}/applications`);
  check(await page.locator(`#pending tr[data-company="${OP}"]`).isVisible(), 'the registration is in the queue');
  await shot('officer-queue');
  await Promise.all([page.waitForURL(file), page.locator(`#pending tr[data-company="${OP}"] button`).click()]);
  step('officer: confirmed');

  // 3. Self-assessment: a gap first, then everything met; apply.
  await company();
  await page.goto(`${BASE}/portal/assessment`);
  for (const sel of await page.locator('select[name^="met."]').all()) await sel.selectOption('YES');
  for (const area of await page.locator('textarea[name^="evidence."]').all()) await area.fill('Security manual, chapter 4');
  await page.selectOption('select[name="met.CS-1"]', 'PARTLY');
  await Promise.all([page.waitForURL(/\/portal\/assessment/), page.click('#assessment button.primary')]);
  check(await page.locator('li[data-gap="CS-1"]').isVisible(), 'the gap is listed');
  check(await page.locator('#apply').isDisabled(), 'no application with a gap');
  await shot('assessment-gap');
  await page.selectOption('select[name="met.CS-1"]', 'YES');
  await Promise.all([page.waitForURL(/\/portal\/assessment/), page.click('#assessment button.primary')]);
  await Promise.all([page.waitForURL(/\/portal$/), page.click('#apply')]);
  check((await status()) === 'SUBMITTED', 'submitted');
  await shot('submitted');

  // 4. The officer's work: review, visit, findings, validation.
  await officer();
  await page.goto(file);
  await officerAction('review');
  await officerAction('schedule', { date: '2026-12-15' });
  await officerAction('finding', { requirement: 'CS-2', kind: 'REQUIRED_CHANGE', deadline: '2027-01-31', text: 'Keep the seal register by seal number' });
  await officerAction('finding', { requirement: 'CV-2', kind: 'RECOMMENDATION', text: 'Track trucks on the port run' });
  await officerAction('validate', { note: 'visit done' });
  await officerAction('message', { text: 'Please answer the required change.' });
  await shot('officer-file');

  // 5. The company answers the required change.
  await company();
  check((await status()) === 'VALIDATED', 'validated');
  const answer = page.locator('tr[data-finding="1"] form');
  await answer.locator('textarea').fill('Seal register introduced at dispatch');
  await Promise.all([page.waitForURL(/\/portal$/), answer.locator('button').click()]);
  check(await page.locator('tr[data-finding="2"] form').count() === 0, 'a recommendation needs no answer');
  await shot('findings');

  // 6. The validating officer cannot certify; a second admin does.
  await officer();
  await page.goto(file);
  await page.locator('form[data-action="certify"] button').click();
  await page.waitForLoadState('load');
  check((await page.locator('p.error').textContent()).includes('second officer'), 'the validating officer is refused');
  await loginAs(env('CERTIFIER_USER'), env('STAFF_PASS'), /\/cases/);
  await page.goto(file);
  await officerAction('contact', { name: 'Pia Ramos', phone: '+49 40 1234' });
  await officerAction('certify', { note: 'all requirements met' });

  // 7. The company sees its certification, validity and contact point.
  await company();
  check((await status()) === 'CERTIFIED', 'certified');
  check((await page.locator('#registry-status').textContent()).includes('ACTIVE'), 'registry ACTIVE');
  check((await page.locator('#contact').textContent()).includes('Pia Ramos'), 'contact point');
  await shot('certified');
  check(failures.length === 0, `accessibility:\n${failures.join('\n')}`);
  console.log('portal walk ok');
} finally {
  await context.close();
}
