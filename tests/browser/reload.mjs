// The officer console after live reconfigurations, in headless Chromium (playwright-core,
// Debian's chromium). Started by tests/browser_reload.rs, which runs the agent and
// reloads its configuration: it prints "@@reload:<what>" (invalid, policy) and reads one
// answer line once that reload is done. The console with the refusal's banner goes through
// the accessibility audit (axe-core) in English and Spanish.
// Env: AGENT_URL, PASSWORD, SCREENS.
import { join } from "node:path";
import { agentLogin, axeAudit, check, launchWithProfile, stdioQuestions } from "./lib.mjs";

const BASE = process.env.AGENT_URL;
const PASSWORD = process.env.PASSWORD;
const SCREENS = process.env.SCREENS;

const ask = stdioQuestions();

const context = await launchWithProfile("/usr/bin/chromium", { viewport: { width: 900, height: 700 } });
const axe = axeAudit();

const login = (name) => agentLogin(context, BASE, name, PASSWORD);

let code = 0;
try {
  const page = await login("ana.officer");
  await page.goto(BASE + "/console");
  check((await page.locator("#reload-refused").count()) === 0, "no reload banner before any reload");

  check((await ask("@@reload:invalid")) === "ok", "an invalid file was refused");
  await page.goto(BASE + "/console");
  const banner = await page.textContent("#reload-refused");
  check(banner.includes("Configuration reload refused"), "the console shows the refusal");
  check(banner.includes("policy.random_rate_aeo") && /line \d+/.test(banner),
    "the banner names the key and its line");
  await page.screenshot({ path: join(SCREENS, "agent-reload-refused.png"), fullPage: true });
  await axe.audit(page, "en", "console with the reload refused banner");

  const es = await login("eva.oficial");
  await es.goto(BASE + "/console");
  check((await es.textContent("#reload-refused")).includes("Recarga de la configuración rechazada"),
    "the banner is in the officer's language");
  await axe.audit(es, "es", "console with the reload refused banner");
  await es.close();

  check((await ask("@@reload:policy")) === "ok", "a policy change was applied");
  await page.goto(BASE + "/console");
  check((await page.locator("#reload-refused").count()) === 0, "the banner goes once a reload is applied");
  const applied = await page.textContent("#reload-applied");
  // The context's session is now the Spanish officer's (the last login).
  check(applied.includes("browser-p1#") && applied.includes("browser-p2#") && applied.includes("cambios: 1"),
    "the console shows the applied reload with both policies: " + applied);
  const nav = await page.textContent("nav.lanes");
  check(nav.includes("L1"), "the lanes are still listed");
  console.log("done");
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  code = 1;
} finally {
  await context.close().catch(() => {});
}
if (code !== 0) process.exit(code);
axe.finish("console after reloads");
