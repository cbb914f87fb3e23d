// Screenshots of every screen with the demo's own traffic, for docs/screens and the user
// guide. Run by scripts/screenshots while `aeogate demo` runs.
// Env: CENTRAL_URL, GATE_URL, PASSWORD, OUT (directory), CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (!v) throw new Error(`environment variable ${k} is not set`);
  return v;
};
const CENTRAL = env('CENTRAL_URL').replace(/\/$/, '');
const GATE = env('GATE_URL').replace(/\/$/, '');
const PASSWORD = env('PASSWORD');
const OUT = env('OUT');

const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

async function session(base, loginPath, userField, user, viewport) {
  // The demo's central uses a certificate from a CA made for the run.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport, locale: 'en-GB' });
  context.setDefaultTimeout(15000);
  const page = await context.newPage();
  await page.goto(base + loginPath);
  await page.fill(`input[name="${userField}"]`, user);
  await page.fill('input[name="password"]', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.press('input[name="password"]', 'Enter')]);
  if (page.url().includes('/login')) throw new Error(`login as ${user} at ${base} failed`);
  return page;
}

async function shot(page, name, fullPage = false) {
  await page.waitForTimeout(400);
  await page.screenshot({ path: join(OUT, name), fullPage });
  console.log(`- ${name}`);
}

// The booth's screen (1280×720) and a tablet's width (768 px).
const booth = { width: 1280, height: 720 };
const tablet = { width: 768, height: 1024 };
const desk = { width: 1366, height: 900 };

// Gate: the officer console (the booth's small screen), a Spanish-speaking officer, the
// terminal operator view.
const officer = await session(GATE, '/login', 'name', 'officer', booth);

// Looks through the lanes (for up to a minute) for one whose panel shows a decision of
// the wanted class (d-fast, d-inspect …) and photographs it.
async function laneShowing(page, cls, name) {
  for (let round = 0; round < 12; round++) {
    for (const lane of ['L1', 'L2', 'L3', 'L4']) {
      await page.goto(`${GATE}/console?lane=${lane}`);
      // The panel is live: a truck can drive in between the look and the picture, so the
      // picture is kept only if the decision is still what the panel shows after it.
      for (let look = 0; look < 10; look++) {
        const showing = async () => (await page.locator(`#live .decision.${cls}`).count()) > 0
          && !(await page.locator('#live').innerText()).includes('reading');
        if (await showing()) {
          const png = await page.screenshot();
          if (await showing()) {
            writeFileSync(join(OUT, name), png);
            console.log(`- ${name} (lane ${lane})`);
            return true;
          }
        }
        await page.waitForTimeout(500);
      }
    }
    await page.waitForTimeout(3000);
  }
  console.log(`- no lane showed ${cls} within a minute; ${name} not taken`);
  return false;
}
await laneShowing(officer, 'd-fast', 'demo-officer-console.png');
await laneShowing(officer, 'd-inspect', 'demo-officer-inspect.png');
const officerTablet = await session(GATE, '/login', 'name', 'officer', tablet);
await laneShowing(officerTablet, 'd-inspect', 'demo-officer-inspect-768.png');
await laneShowing(officerTablet, 'd-standard', 'demo-officer-standard-768.png');
const oficial = await session(GATE, '/login', 'name', 'oficial', booth);
await shot(oficial, 'demo-officer-console-es.png');
const operator = await session(GATE, '/login', 'name', 'operator', desk);
await operator.goto(GATE + '/operator');
await shot(operator, 'demo-operator-view.png');

// Central: the exceptions queue, a case, gate health, charts, programme figures, registry.
const analyst = await session(CENTRAL, '/login', 'user', 'analyst', desk);
await analyst.goto(CENTRAL + '/cases?state=');
await shot(analyst, 'demo-central-cases.png');
const firstCase = analyst.locator('a[href^="/cases/"]').first();
if (await firstCase.count()) {
  await firstCase.click();
  await analyst.waitForLoadState();
  await shot(analyst, 'demo-central-case.png', true);
}
for (const [path, name] of [['/gates', 'demo-central-gates.png'], ['/charts', 'demo-central-charts.png'],
  ['/programme', 'demo-central-programme.png'], ['/registry?q=DE', 'demo-central-registry.png']]) {
  await analyst.goto(CENTRAL + path);
  await shot(analyst, name, path !== '/gates');
}
await browser.close();
