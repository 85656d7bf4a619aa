import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const web = fileURLToPath(new URL("../..", import.meta.url));

describe("the typed client", () => {
  it("is generated from the current openapi.json (regenerate with `npm run generate`)", () => {
    const out = join(mkdtempSync(join(tmpdir(), "schema-")), "schema.d.ts");
    const cli = join(web, "node_modules/openapi-typescript/bin/cli.js");
    execFileSync(process.execPath, [cli, join(web, "../openapi.json"), "-o", out], { stdio: "pipe" });

    expect(readFileSync(join(web, "src/api/schema.d.ts"), "utf8")).toBe(readFileSync(out, "utf8"));
  });
});
