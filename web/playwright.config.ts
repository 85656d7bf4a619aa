import { defineConfig } from "@playwright/test";

/**
 * The browser tests run Debian's Chromium (`CHROMIUM`, default /usr/bin/chromium): nothing
 * here downloads a browser. `infra/local/web-test.sh` starts the app, the local gateway with
 * its worker and the simulator, and passes their addresses in the environment.
 */
export default defineConfig({
  testDir: "e2e",
  timeout: 300_000,
  expect: { timeout: 15_000 },
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  use: {
    baseURL: process.env.WEB_URL ?? "http://127.0.0.1:3000",
    trace: "off",
    screenshot: "off",
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      // As root on a closed network: no sandbox, and none of Chromium's calls home.
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
});
