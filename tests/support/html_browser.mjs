// Opens an HTML report in Debian's headless Chromium, as a person would, and says what it saw
// (tests/test_audit_html.py): node html_browser.mjs PAGE.html SHOT.png PROFILE_DIR
// prints one JSON object: every request the page made, CSP violations, console errors, the
// rendered rows, the tag column's order and its aria-sort before and after clicking its header,
// and what following a failing rule's link shows.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const require = createRequire(new URL("../npm/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [page_path, shot_path, profile] = process.argv.slice(2);
const VIEWPORT = { width: 1280, height: 900 };

const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: VIEWPORT,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const url = pathToFileURL(page_path).href;
  const requests = [];
  const errors = [];
  context.on("request", (request) => requests.push(request.url()));
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.addInitScript(() => {
    window.__violations = [];
    document.addEventListener("securitypolicyviolation", (event) =>
      window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`),
    );
  });
  await page.goto(url, { waitUntil: "load" });
  await page.screenshot({ path: shot_path });

  const rows = () => page.$$eval("#tags tbody tr", (trs) => trs.map((tr) => tr.innerText));
  const tags = () => page.$$eval("#tags tbody tr", (trs) => trs.map((tr) => tr.cells[1].innerText));
  const sorts = () => page.$$eval("#tags thead th", (ths) => ths.map((th) => th.getAttribute("aria-sort")));
  const seen = { url, rows: await rows(), tags: await tags(), sorts: await sorts() };
  seen.failing_row_box = await page.locator("#tags tbody tr.bad-row").first().boundingBox();

  await page.click("#tags thead th:nth-child(2) button");
  seen.tags_after_click = await tags();
  seen.sorts_after_click = await sorts();
  await page.click("#tags thead th:nth-child(2) button");
  seen.tags_after_second_click = await tags();
  seen.sorts_after_second_click = await sorts();

  const link = page.locator("#tags tbody a").first();
  seen.rule_link = await link.innerText();
  await link.click();
  seen.hash = await page.evaluate(() => location.hash);
  seen.target = await page.evaluate(() => {
    const target = document.querySelector(":target");
    return target ? target.innerText : null;
  });
  seen.chart_title = await page.$eval("#chart svg > title", (t) => t.textContent);
  seen.violations = await page.evaluate(() => window.__violations);
  seen.requests = requests;
  seen.errors = errors;
  seen.viewport = VIEWPORT;
  process.stdout.write(JSON.stringify(seen));
} finally {
  await context.close();
}
