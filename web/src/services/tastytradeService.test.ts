import { describe, expect, it } from "vitest";
import { createTastytradeService } from "./tastytradeService";
import { failingApi, recordingApi } from "@/test/recordingApi";

const ACCOUNT = "6f1c1c1e-8a51-4c0e-9d5a-0d1f5e0c1a11";

describe("the tastytrade service", () => {
  it("sends the provider's token as a bearer token to the versioned API", async () => {
    const { api, requests } = recordingApi(() => ({ status: 200, body: [] }));

    const accounts = await createTastytradeService(api).listAccounts();

    expect(accounts).toEqual({ ok: true, value: [] });
    expect(requests[0]?.url).toBe("http://api.test/api/v1/tastytrade-accounts");
    expect(requests[0]?.headers.get("authorization")).toBe("Bearer jwt-1");
  });

  it("leaves blank filters out of the query, since the API refuses empty parameters", async () => {
    const { api, requests } = recordingApi(() => ({ status: 200, body: { items: [], next_cursor: null } }));

    await createTastytradeService(api).transactions(
      ACCOUNT,
      { from: "2026-01-01", symbol: "", type: undefined },
      { cursor: "abc", limit: 50 },
    );

    const url = new URL(requests[0]?.url ?? "");
    expect(url.pathname).toBe(`/api/v1/tastytrade-accounts/${ACCOUNT}/transactions`);
    expect(Object.fromEntries(url.searchParams)).toEqual({ from: "2026-01-01", cursor: "abc", limit: "50" });
  });

  it("posts a personal grant's secrets in the body only", async () => {
    const { api, requests } = recordingApi(() => ({ status: 201, body: [] }));

    await createTastytradeService(api).linkPersonalGrant({
      environment: "sandbox",
      refreshToken: "rt-secret",
      clientSecret: "cs-secret",
    });

    const request = requests[0];
    expect(request?.url).not.toContain("secret");
    expect(await request?.json()).toEqual({
      environment: "sandbox",
      refresh_token: "rt-secret",
      client_secret: "cs-secret",
    });
  });

  it("reports a validation error with the field at fault", async () => {
    const { api } = recordingApi(() => ({
      status: 400,
      body: {
        error: { code: "invalid_request", message: "refresh_token is required", field: "refresh_token" },
      },
    }));

    const linked = await createTastytradeService(api).linkPersonalGrant({
      environment: "sandbox",
      refreshToken: "",
      clientSecret: "x",
    });

    expect(linked).toEqual({
      ok: false,
      error: { kind: "validation", field: "refresh_token", message: "refresh_token is required" },
    });
  });

  it("tells a grant tastytrade refused apart from a malformed request", async () => {
    const { api } = recordingApi(() => ({
      status: 400,
      body: { error: { code: "invalid_grant", message: "tastytrade refused the grant" } },
    }));

    const linked = await createTastytradeService(api).linkPersonalGrant({
      environment: "sandbox",
      refreshToken: "rt",
      clientSecret: "cs",
    });

    expect(linked.ok || linked.error.kind).toBe("grant_rejected");
  });

  it("answers unlink's empty 204 as success", async () => {
    const { api, requests } = recordingApi(() => ({ status: 204 }));

    const unlinked = await createTastytradeService(api).unlink(ACCOUNT);

    expect(unlinked.ok).toBe(true);
    expect(requests[0]?.method).toBe("DELETE");
  });

  it("maps the gateway's 401 and a missing account to their kinds", async () => {
    const { api } = recordingApi((request) =>
      request.url.endsWith("/tastytrade-accounts")
        ? { status: 401, body: { message: "Unauthorized" } }
        : { status: 404, body: { error: { code: "not_found", message: "not found" } } },
    );
    const service = createTastytradeService(api);

    const list = await service.listAccounts();
    const one = await service.getAccount(ACCOUNT);

    expect(list.ok || list.error.kind).toBe("unauthorized");
    expect(one.ok || one.error.kind).toBe("not_found");
  });

  it("turns a failed connection into a network error instead of throwing", async () => {
    const accounts = await createTastytradeService(failingApi()).listAccounts();

    expect(accounts.ok || accounts.error.kind).toBe("network");
  });
});
