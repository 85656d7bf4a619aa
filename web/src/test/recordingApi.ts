/**
 * A recording `fetch` for the services' unit tests: each request is kept, and answered by the
 * test's handler. The services' logic (paths, query building, error mapping, polling) is pure;
 * the HTTP API itself is exercised end to end in the browser tests.
 */
import { createApi } from "@/api/client";
import type { TokenProvider } from "@/lib/auth";

export type Answer = { status: number; body?: unknown; headers?: Record<string, string> };

export function recordingApi(answer: (request: Request) => Answer | Promise<Answer>, token = "jwt-1") {
  const requests: Request[] = [];
  const fetchImpl = (async (input: Request) => {
    requests.push(input.clone());
    const a = await answer(input);
    const body = a.body === undefined ? null : JSON.stringify(a.body);
    return new Response(body, {
      status: a.status,
      headers: { "content-type": "application/json", ...a.headers },
    });
  }) as typeof fetch;
  const tokens: TokenProvider = { token: async () => token };
  return { api: createApi("http://api.test", tokens, fetchImpl), requests };
}

export function failingApi() {
  const fetchImpl = (async () => {
    throw new TypeError("fetch failed");
  }) as typeof fetch;
  return createApi("http://api.test", { token: async () => null }, fetchImpl);
}
