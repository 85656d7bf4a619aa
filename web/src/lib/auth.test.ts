import { describe, expect, it } from "vitest";
import { devTokenProvider } from "./auth";

describe("the dev token provider", () => {
  it("asks the local gateway once and keeps the token in memory until it nears expiry", async () => {
    const asked: string[] = [];
    const fetchImpl = (async (url: string) => {
      asked.push(url);
      return new Response(JSON.stringify({ token: `jwt-${asked.length}`, expires_in: 3600 }));
    }) as unknown as typeof fetch;
    const provider = devTokenProvider("http://127.0.0.1:8787", "dev user", fetchImpl);

    const tokens = await Promise.all([provider.token(), provider.token()]);
    const later = await provider.token();

    expect(tokens).toEqual(["jwt-1", "jwt-1"]);
    expect(later).toBe("jwt-1");
    expect(asked).toEqual(["http://127.0.0.1:8787/__local/dev-token?sub=dev%20user"]);
  });

  it("answers no token when the gateway refuses", async () => {
    const fetchImpl = (async () => new Response("", { status: 404 })) as unknown as typeof fetch;

    expect(await devTokenProvider("http://gw", "u", fetchImpl).token()).toBeNull();
  });
});
