// What the browser scripts share: Chromium's launch flags, a browser profile of the run's
// own, and the line-per-question channel to the Rust test that started the script.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

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

// Runs axe-core (its source `axeSource`) with the rule `tags` on the page as it is now.
// The engine is evaluated through the DevTools protocol, so the page's
// Content-Security-Policy stays as it is for the page's own scripts. Returns the
// violations whose impact is in `blocking`, and how many others there were.
export async function axeViolations(page, axeSource, tags, blocking) {
  await page.evaluate(axeSource);
  const result = await page.evaluate((t) => window.axe.run(document, {
    runOnly: { type: 'tag', values: t },
    resultTypes: ['violations'],
  }), tags);
  const bad = result.violations.filter((v) => blocking.has(v.impact));
  return { bad, minor: result.violations.length - bad.length };
}
