/**
 * Where the API's bearer token comes from. The deployed app plugs in its identity provider
 * (Supabase Auth, Cognito: whichever issues the JWT the API Gateway authorizer checks);
 * locally the dev provider asks the local gateway. Tokens live in memory only: nothing is
 * written to local storage or cookies by this module.
 */
export interface TokenProvider {
  /** A bearer token for the API, or `null` when nobody is signed in. */
  token(): Promise<string | null>;
}

/** Renew a token this long before it expires, so no request carries one about to lapse. */
const RENEW_MARGIN_MS = 60_000;

/**
 * The local gateway's dev token for `user` (`GET /__local/dev-token`), kept in memory until
 * shortly before it expires. Concurrent callers share one request.
 */
export function devTokenProvider(
  gatewayUrl: string,
  user: string,
  fetchImpl: typeof fetch = (...args) => fetch(...args),
): TokenProvider {
  let cached: { token: string; renewAt: number } | null = null;
  let pending: Promise<string | null> | null = null;
  const fetchToken = async (): Promise<string | null> => {
    const url = `${gatewayUrl}/__local/dev-token?sub=${encodeURIComponent(user)}`;
    const response = await fetchImpl(url);
    if (!response.ok) return null;
    const body = (await response.json()) as { token: string; expires_in: number };
    cached = { token: body.token, renewAt: Date.now() + body.expires_in * 1000 - RENEW_MARGIN_MS };
    return body.token;
  };
  return {
    async token() {
      if (cached && Date.now() < cached.renewAt) return cached.token;
      pending ??= fetchToken().finally(() => {
        pending = null;
      });
      return pending;
    },
  };
}

/**
 * Adapts an identity provider's session, for example
 * `fromSession(async () => (await supabase.auth.getSession()).data.session?.access_token ?? null)`
 * or, with Amplify, `fromSession(async () => (await fetchAuthSession()).tokens?.idToken?.toString() ?? null)`.
 */
export function fromSession(current: () => Promise<string | null>): TokenProvider {
  return { token: current };
}
