// Central's login `next` in headless Chromium (playwright-core, Debian's chromium).
// Started by central/tests/browser_login_redirect.rs, which runs central on 127.0.0.1.
// Env: BASE_URL, CHROMIUM, USER_NAME, USER_PASS.
// Each `next` is put in the login page's URL as an attacker's link would, the form is
// submitted, and the page must end on central's own origin; a `next` central cannot use
// must land on the home page, and none may give a server error.
import { join } from 'node:path';
import { check, env, launchWithProfile } from './lib.mjs';

const BASE = env('BASE_URL');
const origin = new URL(BASE).origin;
// The same server under another host name: another origin a redirect must not reach.
const other = new URL(BASE.replace('127.0.0.1', 'localhost')).host;

const cases = [
  // [next, path the browser must end on]
  ['/programme', '/programme'],
  [`/\t/${other}/cases`, '/cases'],
  [`/\n/${other}/cases`, '/cases'],
  [`/cases\r\nSet-Cookie: x=1`, '/cases'],
  [`//${other}/cases`, '/cases'],
  [`/\\${other}/cases`, '/cases'],
  [`http://${other}/cases`, '/cases'],
  [`/x//${other}`, '/cases'],
];

const context = await launchWithProfile(env('CHROMIUM'));
try {
  for (const [next, want] of cases) {
    await context.clearCookies();
    const page = await context.newPage();
    await page.goto(`${BASE}/login?next=${encodeURIComponent(next)}`);
    await page.fill('input[name=user]', env('USER_NAME'));
    await page.fill('input[name=password]', env('USER_PASS'));
    const posted = page.waitForResponse(
      (r) => r.url() === `${BASE}/login` && r.request().method() === 'POST');
    await page.click('button.primary');
    const res = await posted;
    check(res.status() < 500, `${JSON.stringify(next)}: the login answered ${res.status()}`);
    await page.waitForLoadState('load');
    const url = new URL(page.url());
    check(url.origin === origin,
      `${JSON.stringify(next)}: the browser left for ${page.url()}`);
    check(url.pathname === want,
      `${JSON.stringify(next)}: landed on ${url.pathname}, expected ${want}`);
    console.log(`- ${JSON.stringify(next)} -> ${url.pathname}`);
    await page.close();
  }
  console.log('login redirects ok');
} finally {
  await context.close();
}
