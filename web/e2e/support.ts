import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { expect, type Page } from "@playwright/test";

/** The simulator `web-test.sh` started: its address, grant and accounts. */
export type Sim = {
  base_url: string;
  refresh_token: string;
  client_secret: string;
  account_numbers: string[];
};

export function sim(): Sim {
  const path = process.env.SIM_JSON;
  if (!path) throw new Error("SIM_JSON names the simulator's credentials file");
  return JSON.parse(readFileSync(path, "utf8")) as Sim;
}

/** How the page writes a decimal string: grouped, with a true minus sign. */
export function plain(text: string): string {
  return text.replaceAll("−", "-").replaceAll(",", "").replace("$", "").trim();
}

/** `"-3.50"` and `"-3.5"` are the same value. */
export function sameDecimal(shown: string, truth: string): boolean {
  const norm = (s: string) => {
    const [whole = "0", fraction = ""] = plain(s).replace(/^\+/, "").split(".");
    const f = fraction.replace(/0+$/, "");
    const w = whole.replace(/^(-?)0+(?=\d)/, "$1");
    const value = f ? `${w}.${f}` : w;
    return value === "-0" ? "0" : value;
  };
  return norm(shown) === norm(truth);
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** axe-core on the page as it stands: no serious or critical violation of WCAG 2.1 A/AA. */
export async function expectAccessible(page: Page, what: string): Promise<void> {
  await page.addScriptTag({ content: axeSource });
  const violations = await page.evaluate(async () => {
    const axe = (
      window as unknown as {
        axe: {
          run: (
            ctx: Document,
            opts: object,
          ) => Promise<{
            violations: { id: string; impact: string | null; help: string; nodes: { target: string[] }[] }[];
          }>;
        };
      }
    ).axe;
    const result = await axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
    });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((n) => n.target.join(" ")),
    }));
  });
  const serious = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(serious, `${what}: ${JSON.stringify(serious, null, 2)}`).toEqual([]);
}

const SIZES = { desktop: { width: 1280, height: 900 }, phone: { width: 390, height: 844 } } as const;

/** Full-page screenshots at desktop and phone width, under the build output. */
export async function screenshots(page: Page, name: string): Promise<void> {
  const dir = process.env.SCREENSHOT_DIR ?? join(process.cwd(), "..", "build", "web-screenshots");
  mkdirSync(dir, { recursive: true });
  for (const [size, viewport] of Object.entries(SIZES)) {
    await page.setViewportSize(viewport);
    // Layout settles (the chart redraws to its new width) before the picture.
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(dir, `${name}-${size}.png`), fullPage: true });
    if (size === "desktop") {
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: join(dir, `${name}-${size}-top.png`) });
    }
    // Nothing sideways at phone width but the tables' own scrolling regions.
    if (size === "phone") {
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow, `${name} scrolls sideways at phone width`).toBeLessThanOrEqual(0);
    }
  }
  await page.setViewportSize(SIZES.desktop);
}
