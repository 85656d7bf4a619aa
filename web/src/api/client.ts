import createClient from "openapi-fetch";
import type { TokenProvider } from "@/lib/auth";
import { errorFromResponse, networkError, type Result } from "@/lib/errors";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Api = ReturnType<typeof createClient<paths>>;

/** The API client, built once per app: every request carries the provider's bearer token. */
export function createApi(
  apiUrl: string,
  tokens: TokenProvider,
  fetchImpl: typeof fetch = (...args) => fetch(...args),
): Api {
  const api = createClient<paths>({ baseUrl: `${apiUrl}/api/v1`, fetch: fetchImpl });
  api.use({
    async onRequest({ request }) {
      const token = await tokens.token();
      if (token) request.headers.set("Authorization", `Bearer ${token}`);
      return request;
    },
  });
  return api;
}

/** An openapi-fetch call as a `Result`: its data, or the typed error. */
export async function call<T>(
  request: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<Result<T>> {
  try {
    const { data, error, response } = await request;
    if (response.ok) return { ok: true, value: data as T };
    return { ok: false, error: errorFromResponse(response, error) };
  } catch {
    return { ok: false, error: networkError };
  }
}
