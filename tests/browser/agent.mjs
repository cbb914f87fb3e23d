// Drives headless Chromium through the agent's screens (officer console, operator view).
// Talks to tests/browser_agent.rs over stdio: prints "@@arrive:<kind>" or
// "@@lights:<lane>" and reads one answer line.
import { chromium } from "playwright-core";
import { join } from "node:path";
import { CHROMIUM_ARGS, agentLogin, check, stdioQuestions } from "./lib.mjs";

const BASE = process.env.AGENT_URL;
const PASSWORD = process.env.PASSWORD;
const SCREENS = process.env.SCREENS;

const ask = stdioQuestions();


// Playwright gives every launch a fresh temporary profile.
const chrome = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [...CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"],
});
const VIEW = { viewport: { width: 900, height: 1100 } };
const browser = await chrome.newContext(VIEW);

const login = (context, name) => agentLogin(context, BASE, name, PASSWORD);

const shot = (page, name) => page.screenshot({ path: join(SCREENS, name), fullPage: true });

try {
  // --- login page ---------------------------------------------------------------------
  const first = await browser.newPage();
  await first.goto(BASE + "/console");
  check(first.url().endsWith("/login"), "without a session the console redirects to the login page");
  await first.fill('input[name="name"]', "ana.officer");
  await first.fill('input[name="password"]', "wrong-password-0");
  await first.click('button[type="submit"]');
  await first.waitForSelector("p.error");
  check((await first.textContent("p.error")).includes("Wrong user name"), "a wrong password is refused");
  await shot(first, "agent-login.png");
  await first.close();

  // --- officer: a truck appears without reload ---------------------------------------
  const officer = await login(browser, "ana.officer");
  check(officer.url().endsWith("/console"), "an officer lands on the console");
  await officer.evaluate(() => (window.__noReload = 42));
  await ask("@@arrive:fast");
  await officer.waitForSelector('#lane-live[data-decision="FAST"]', { timeout: 15000 });
  check((await officer.evaluate(() => window.__noReload)) === 42, "the FAST decision arrived without a reload");
  const fastText = await officer.textContent("#lane-live");
  check(fastText.includes("Certified parties"), "the FAST reason is shown in plain English");
  check(/E-SEAL/.test(fastText) && /RFID/.test(fastText), "reads are shown with their sources");
  check(fastText.includes("ACTIVE") && fastText.includes("Operator 0 GmbH"), "parties with AEO status are shown");
  await shot(officer, "agent-officer-fast.png");

  // --- override: refused without reason, accepted with one ---------------------------
  await officer.selectOption('#f-override select[name="to"]', "INSPECT");
  await officer.click('#f-override button[type="submit"]');
  await officer.waitForSelector("#msg.error");
  check((await officer.textContent("#msg")).includes("reason is required"), "an override without a reason is refused");
  check((await officer.getAttribute("#lane-live", "data-decision")) === "FAST", "the lane is unchanged after the refusal");
  check((await ask("@@lights:L1")) === "Green", "the lane light is still green");
  await officer.selectOption('#f-override select[name="to"]', "INSPECT");
  await officer.selectOption('#f-override select[name="reason"]', "DRIVER_BEHAVIOUR");
  await officer.fill('#f-override input[name="note"]', "driver refused to open the cab");
  await officer.click('#f-override button[type="submit"]');
  await officer.waitForSelector("#msg.ok");
  await officer.waitForSelector('#lane-live[data-decision="INSPECT"]', { timeout: 10000 });
  check(true, "an override with a reason is accepted and the console shows INSPECT");
  let light = "";
  for (let i = 0; i < 20 && light !== "Red"; i++) {
    light = await ask("@@lights:L1");
    if (light !== "Red") await officer.waitForTimeout(200);
  }
  check(light === "Red", "the lane light turned red after the override");

  // --- INSPECT with a seal exception, audible cue ------------------------------------
  const beepsBefore = Number((await officer.evaluate(() => document.body.dataset.beeps)) || 0);
  await ask("@@arrive:tampered");
  await officer.waitForSelector('#lane-live[data-exception="true"]', { timeout: 15000 });
  const inspectText = await officer.textContent("#lane-live");
  check(inspectText.includes("Electronic seal reports"), "the seal exception reason is shown");
  const beeps = Number((await officer.evaluate(() => document.body.dataset.beeps)) || 0);
  check(beeps > beepsBefore, "an audible cue sounded for INSPECT");
  await shot(officer, "agent-officer-inspect.png");

  // Inspection result: an invalid new seal number is refused, a valid one recorded.
  await officer.click("#f-inspection >> xpath=..//summary");
  await officer.selectOption('#f-inspection select[name="result"]', "SEAL_REPLACED");
  await officer.fill('#f-inspection input[name="new_seal"]', "??");
  await officer.click('#f-inspection button[type="submit"]');
  await officer.waitForSelector("#msg.error");
  check(true, "an invalid replacement seal number is refused");
  await officer.selectOption('#f-inspection select[name="result"]', "SEAL_REPLACED");
  await officer.fill('#f-inspection input[name="new_seal"]', "EU7654321");
  await officer.click('#f-inspection button[type="submit"]');
  await officer.waitForSelector("#msg.ok");
  check(true, "a seal replacement with a valid number is recorded");

  // --- a forged cross-site POST is refused -------------------------------------------
  // The attacker's page: another origin (an opaque one), posting to the console with the
  // officer's browser.
  const evil = await browser.newPage();
  await evil.setContent(
    '<form id="f" method="POST" action="' + BASE + '/logout"><input name="csrf" value="guess"></form>',
  );
  const forged = await Promise.all([
    evil.waitForResponse((r) => r.url().startsWith(BASE + "/logout")),
    evil.evaluate(() => document.getElementById("f").submit()),
  ]);
  check(forged[0].status() === 403, "a forged cross-site POST is refused (" + forged[0].status() + ")");
  await evil.close();
  await officer.reload();
  check(officer.url().endsWith("/console"), "the officer is still logged in after the forged request");

  // --- history ------------------------------------------------------------------------
  await officer.goto(BASE + "/console/history");
  const all = await officer.$$("table.history tbody tr");
  check(all.length >= 2, "history lists the lane's transactions");
  const number = (await officer.textContent("table.history tbody tr td.mono")).trim().split(" ")[0];
  await officer.fill('input[name="container"]', number);
  await Promise.all([officer.waitForNavigation(), officer.click('form.search button[type="submit"]')]);
  const found = await officer.$$eval("table.history tbody tr td.mono", (tds) => tds.map((t) => t.textContent));
  check(found.length >= 1 && found.every((t) => t.includes(number)), "history search by container number finds " + number);
  await shot(officer, "agent-history.png");

  // --- operator -----------------------------------------------------------------------
  await ask("@@arrive:l2");
  const opContext = await chrome.newContext(VIEW);
  const opPage = await login(opContext, "terminal.ops");
  check(opPage.url().endsWith("/operator"), "an operator lands on the operator view");
  await opPage.waitForSelector(".lanecard");
  const opText = await opPage.textContent("main");
  check(!/tamper|Reasons|Certified parties|ESEAL/i.test(opText), "the operator view shows no risk reasons");
  check(opText.includes("Inspection bay L1"), "the operator sees the route");
  await shot(opPage, "agent-operator.png");
  const consoleResp = await opPage.goto(BASE + "/console");
  check(consoleResp.status() === 403, "an operator cannot open the officer console");
  await opPage.goto(BASE + "/operator");
  const status = await opPage.evaluate(async () => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const r = await fetch("/api/v1/lanes/L1/actions", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ action: "MANUAL_ENTRY", value: { kind: "CONTAINER", number: "CSQU3054383" } }),
    });
    return r.status;
  });
  check(status === 403, "an operator's officer action is refused (403)");

  // --- lane control: a supervisor closes lane L2 and reopens it ------------------------
  const officerL2 = await officer.goto(BASE + "/console?lane=L2");
  check(officerL2.ok() && !(await officer.$("#f-lane")), "an officer has no lane close form");
  const supContext = await chrome.newContext(VIEW);
  const sup = await login(supContext, "sam.supervisor");
  await sup.goto(BASE + "/console?lane=L2");
  await sup.keyboard.press("l");
  check(
    (await sup.evaluate(() => document.activeElement && document.activeElement.name)) === "reason",
    "key L opens the lane close form at its reason",
  );
  await sup.click('#f-lane button[value="close"]');
  check(!(await sup.$("#msg.ok")), "closing without a reason is not sent (the reason is required)");
  await sup.fill('#f-lane input[name="reason"]', "loop repair");
  await sup.click('#f-lane button[value="close"]');
  await sup.waitForSelector("#msg.ok");
  await sup.waitForSelector('#lane-live[data-closed="true"]', { timeout: 10000 });
  const closedText = await sup.textContent("#lane-live");
  check(closedText.includes("LANE CLOSED") && closedText.includes("loop repair") && closedText.includes("sam.supervisor"),
    "the console shows the lane closed with its reason and who closed it");
  let l2 = "";
  for (let i = 0; i < 20 && l2 !== "Red"; i++) {
    l2 = await ask("@@lights:L2");
    if (l2 !== "Red") await sup.waitForTimeout(200);
  }
  check(l2 === "Red", "the closed lane's light is red");
  await shot(sup, "agent-lane-closed.png");
  const opClosed = await chrome.newContext(VIEW);
  const opView = await login(opClosed, "terminal.ops");
  await opView.waitForSelector('.lanecard[data-lane="L2"] [data-closed="true"]');
  const card = await opView.textContent('.lanecard[data-lane="L2"]');
  check(card.includes("LANE CLOSED") && card.includes("loop repair") && !card.includes("sam.supervisor"),
    "the operator view shows the lane closed with its reason");
  await shot(opView, "agent-operator-lane-closed.png");
  await opClosed.close();
  await sup.fill('#f-lane input[name="reason"]', "loop repaired");
  await sup.click('#f-lane button[value="reopen"]');
  await sup.waitForSelector('#lane-live[data-closed="false"]', { timeout: 10000 });
  check(true, "the supervisor reopens the lane");
  await supContext.close();

  // --- languages ----------------------------------------------------------------------
  for (const [user, title, reason, file] of [
    ["sofia.oficial", "Consola del oficial", "El precinto electrónico indica", "agent-officer-es.png"],
    ["joao.agente", "Console do agente", "O lacre eletrônico indica", "agent-officer-pt.png"],
  ]) {
    const ctx = await chrome.newContext(VIEW);
    const p = await login(ctx, user);
    const text = await p.textContent("body");
    check(text.includes(title), user + " sees the console in their language");
    check(text.includes(reason), user + " sees the reason in their language");
    await shot(p, file);
    await ctx.close();
  }

  // --- the gate's clock off from central's: banner, no FAST ----------------------------
  await ask("@@degrade:clock");
  const clockCtx = await chrome.newContext(VIEW);
  const clockPage = await login(clockCtx, "ana.officer");
  await ask("@@arrive:fast");
  await clockPage.waitForSelector('#lane-live[data-decision="STANDARD"]', { timeout: 15000 });
  await clockPage.waitForSelector("#lane-live .banner li.clock", { timeout: 10000 });
  const clockText = await clockPage.textContent("#lane-live");
  check(clockText.includes("Clock untrusted: this gate is ahead of central by 10.0 s"), "the banner says the gate's clock is ahead and by how much");
  check(clockText.includes("The gate's clock cannot be trusted"), "the reason says why the truck is not FAST");
  await shot(clockPage, "agent-clock-untrusted.png");
  await clockCtx.close();
  await chrome.close();
  console.log("done");
  process.exit(0);
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  await chrome.close().catch(() => {});
  process.exit(1);
}
