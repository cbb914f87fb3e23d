// The accessibility check itself, on two pages of its own in headless Chromium: a clean
// page passes the audit the screens go through, and a page with known serious violations
// (text at 2:1 contrast, a select without a name, a button without a name) makes the run
// fail, naming each rule — so a screen with such a violation fails its browser test.
// Started by tests/browser_agent.rs, which expects this script to FAIL with those rules.
// Env: CHROMIUM (default /usr/bin/chromium).
import { axeAudit, launchWithProfile } from './lib.mjs';

const page = (body) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Self-test</title></head>
<body><main><h1>Lane L1</h1>${body}</main></body></html>`;
const CLEAN = page(`<p style="color:#1a1a1a;background:#fff">FAST · Route: L1 priority exit</p>
<label>Send to <select name="to"><option>INSPECT</option></select></label><button>Override</button>`);
const VIOLATING = page(`<p style="color:#aaa;background:#fff;font-size:15px">INSPECT · Inspection bay 1</p>
<select name="to"><option>INSPECT</option></select><button></button>`);

const context = await launchWithProfile(process.env.CHROMIUM ?? '/usr/bin/chromium');
const axe = axeAudit();
try {
  const p = await context.newPage();
  await p.setContent(CLEAN);
  const clean = await axe.audit(p, 'en', 'clean page');
  if (clean !== 0) throw new Error(`check failed: the clean page has ${clean} violation(s): ${axe.failures.join('; ')}`);
  console.log('ok - clean page: no serious or critical violation');
  await p.setContent(VIOLATING);
  const bad = await axe.audit(p, 'en', 'page with known violations');
  console.log(`ok - page with known violations: ${bad} serious/critical rule(s) found`);
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  await context.close().catch(() => {});
  process.exit(2);
}
await context.close();
axe.finish('self-test pages');
