// Runs axe-core on one HTML file in headless Chromium and prints the outcome as JSON.
//
// Usage: node axe_check.js CHROMIUM_BINARY REPORT.html [screen|print]
//
// Offline: the report is opened from disk, every request other than the file itself
// (and data: URIs) is aborted and listed under "external", and axe-core is injected
// from node_modules with page.evaluate, so the report itself carries no script.
"use strict";

const fs = require("fs");
const path = require("path");
const { pathToFileURL } = require("url");
const puppeteer = require("puppeteer-core");

// WCAG 2.0, 2.1 and 2.2 at levels A and AA, plus axe's best-practice rules.
const TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"];

async function main() {
  const [chromium, file, media = "screen"] = process.argv.slice(2);
  if (!chromium || !file) {
    throw new Error("usage: node axe_check.js CHROMIUM_BINARY REPORT.html [screen|print]");
  }
  const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
  const url = pathToFileURL(path.resolve(file)).href;
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--single-process", "--no-zygote"],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    const external = [];
    await page.setRequestInterception(true);
    page.on("request", (request) => {
      const target = request.url();
      if (target === url || target.startsWith("data:")) {
        request.continue();
      } else {
        external.push(target);
        request.abort();
      }
    });
    await page.emulateMediaType(media);
    await page.goto(url, { waitUntil: "load" });
    const scriptsInReport = await page.evaluate(() => document.scripts.length);
    await page.evaluate(axeSource);
    const outcome = await page.evaluate(async (tags) => {
      const result = await window.axe.run(document, {
        runOnly: { type: "tag", values: tags },
        resultTypes: ["violations", "incomplete"],
      });
      const brief = (item) => ({
        id: item.id,
        impact: item.impact,
        help: item.help,
        nodes: item.nodes.map((node) => ({
          target: node.target,
          html: node.html.slice(0, 300),
          summary: node.failureSummary,
        })),
      });
      return {
        axeVersion: window.axe.version,
        rulesRun: window.axe.getRules(tags).map((rule) => rule.ruleId),
        violations: result.violations.map(brief),
        incomplete: result.incomplete.map(brief),
        passes: result.passes.length,
      };
    }, TAGS);
    process.stdout.write(JSON.stringify({ ...outcome, tags: TAGS, media, scriptsInReport, external }) + "\n");
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
  process.exit(2);
});
