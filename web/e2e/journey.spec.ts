import { expect, test } from "@playwright/test";
import { expectAccessible, plain, sameDecimal, screenshots, sim } from "./support";

const broker = sim();
const [first, second] = broker.account_numbers as [string, string];

test("a user links tastytrade, watches the sync, reads the portfolio and manages the link", async ({
  page,
  request,
}) => {
  const card = page.getByRole("listitem", { name: `Account ${first}` });
  const started = Date.now();

  await test.step("the accounts page starts empty", async () => {
    await page.goto("/settings/accounts");
    await expect(page.getByText("No tastytrade account is linked yet")).toBeVisible();
  });

  await test.step("linking a personal grant lists its accounts and forgets the secrets", async () => {
    await page.getByText("Link a personal grant (advanced)").click();
    await page.locator("#grant-environment").selectOption("sandbox");
    await page.getByLabel("Refresh token").fill(broker.refresh_token);
    await page.getByLabel("Client secret").fill(broker.client_secret);
    await page.getByRole("button", { name: "Link grant" }).click();

    await expect(page.getByText(`Linked ${broker.account_numbers.length} accounts`)).toBeVisible();
    await expect(page.getByLabel("Refresh token")).toHaveValue("");
    await expect(page.getByLabel("Client secret")).toHaveValue("");
    await expect(page.getByRole("listitem", { name: `Account ${second}` })).toBeVisible();
    const stored = await page.evaluate(
      () => JSON.stringify({ ...window.localStorage }) + JSON.stringify({ ...window.sessionStorage }),
    );
    expect(stored).not.toContain(broker.refresh_token);
  });

  await test.step("the full sync's progress reaches 100%", async () => {
    await expect(card.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100", { timeout: 90_000 });
    await expect(card.getByText("Synced", { exact: true })).toBeVisible();
    await expect(card.getByText("Full sync: Done · 100%")).toBeVisible();
  });

  await test.step("the account page shows the simulator's positions, balances, chart and transactions", async () => {
    const truth = await (await request.get(`${broker.base_url}/__sim/accounts/${first}/truth`)).json();
    await card.getByRole("link", { name: "View portfolio" }).click();
    await expect(page.getByRole("heading", { name: `Account ${first}` })).toBeVisible();

    const positions = page.getByRole("region", { name: "Positions table" }).locator("tbody tr");
    await expect(positions).toHaveCount(truth.positions.length);
    for (const position of truth.positions as { symbol: string; quantity: string }[]) {
      const quantity = await page
        .locator(`tr[data-symbol="${position.symbol}"] td:nth-of-type(2)`)
        .innerText();
      expect(
        sameDecimal(quantity, position.quantity),
        `${position.symbol}: ${quantity} vs ${position.quantity}`,
      ).toBe(true);
    }

    const usd = (truth.balances as { currency: string; "cash-balance": string }[]).find(
      (b) => b.currency === "USD",
    );
    const cash = page
      .locator("dl[aria-label='Balances in USD'] .tile", {
        has: page.locator("dt", { hasText: /^Cash balance$/ }),
      })
      .locator("dd");
    expect(usd).toBeDefined();
    expect(sameDecimal(await cash.innerText(), usd?.["cash-balance"] ?? "")).toBe(true);

    const chart = page.locator("figure.chart-figure");
    await expect(chart.locator("canvas").first()).toBeVisible();
    expect(Number(await chart.getAttribute("data-points"))).toBeGreaterThan(10);
    await expect(chart.locator("figcaption")).toContainText("Net liquidating value over");

    const ids = new Set((truth.transactions.ids as number[]).map(String));
    const rows = page.getByRole("region", { name: "Transactions table" }).locator("tbody tr");
    await expect(rows).toHaveCount(Math.min(50, ids.size));
    const firstPage = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-id") ?? ""));
    expect(
      firstPage.every((id) => ids.has(id)),
      "every row is one of the broker's transactions",
    ).toBe(true);
    await page
      .getByRole("navigation", { name: "Transactions pages" })
      .getByRole("button", { name: "Next" })
      .click();
    await expect(page.getByRole("navigation", { name: "Transactions pages" })).toContainText("Page 2");
    const secondPage = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-id") ?? ""));
    expect(
      secondPage.every((id) => ids.has(id) && !firstPage.includes(id)),
      "page 2 holds new rows only",
    ).toBe(true);

    await page
      .getByRole("navigation", { name: "Transactions pages" })
      .getByRole("button", { name: "Previous" })
      .click();
    await expectAccessible(page, "account page");
    await screenshots(page, "account");
  });

  await test.step("Sync now twice: the second answers with the cooldown's countdown", async () => {
    await page.getByRole("link", { name: "← Accounts" }).click();
    const syncNow = card.getByRole("button", { name: "Sync now" });
    await syncNow.click();
    await expect(card.getByText("Manual sync: Done · 100%")).toBeVisible({ timeout: 60_000 });
    await expect(syncNow).toBeEnabled();
    await syncNow.click();
    await expect(card.getByText(/the next can start in \d+ s/)).toBeVisible();
    await expect(syncNow).toBeDisabled();
    await expectAccessible(page, "accounts page");
    await screenshots(page, "accounts");
  });

  await test.step("a grant revoked at tastytrade turns the account to Reconnect", async () => {
    const revoked = await request.post(`${broker.base_url}/__sim/grants/revoke`, {
      data: { refresh_token: broker.refresh_token },
    });
    expect(revoked.ok()).toBe(true);
    const syncNow = card.getByRole("button", { name: "Sync now" });
    await expect(syncNow).toBeEnabled({ timeout: 40_000 });
    await syncNow.click();
    await expect(card.getByRole("button", { name: "Reconnect" })).toBeVisible({ timeout: 60_000 });
    await expect(card.getByText("Needs reconnect")).toBeVisible();
  });

  await test.step("Reconnect goes through tastytrade's authorize page and syncs again", async () => {
    await card.getByRole("button", { name: "Reconnect" }).click();
    await page.waitForURL(/\/settings\/accounts\?linked=\d+/, { timeout: 30_000 });
    await expect(card.getByText("Synced", { exact: true })).toBeVisible({ timeout: 90_000 });
    await expect(card.getByRole("button", { name: "Sync now" })).toBeVisible();
  });

  await test.step("unlinking says what is kept and removes the account", async () => {
    await card.getByRole("button", { name: "Unlink" }).click();
    const dialog = page.getByRole("dialog", { name: `Unlink ${first}?` });
    await expect(dialog).toContainText("are kept");
    await dialog.getByRole("button", { name: "Unlink account" }).click();
    await expect(card).toHaveCount(0);
    await expect(page.getByRole("listitem", { name: `Account ${second}` })).toBeVisible();
  });

  console.log(`web journey: ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
