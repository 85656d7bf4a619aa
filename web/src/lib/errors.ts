/**
 * Every way a call to the tastysync API can fail, as a value the pages can switch on.
 * The API's own errors arrive as `{"error": {"code", "message", "field"}}`; the gateway's as
 * `{"message"}`; a failed connection as nothing at all.
 */
export type ApiError =
  | { kind: "rate_limited"; retryAfterSeconds: number; message: string }
  | { kind: "needs_reauth"; message: string }
  | { kind: "grant_rejected"; message: string }
  | { kind: "validation"; field: string | null; message: string }
  | { kind: "unauthorized"; message: string }
  | { kind: "not_found"; message: string }
  | { kind: "unavailable"; message: string }
  | { kind: "network"; message: string }
  | { kind: "server"; status: number; message: string };

export type Result<T> = { ok: true; value: T } | { ok: false; error: ApiError };

/** When a 429 says nothing, the API's default cooldown is a safe wait. */
const DEFAULT_RETRY_SECONDS = 60;

type Detail = { code?: string; message?: string; field?: string | null };

function detailOf(body: unknown): Detail {
  if (typeof body !== "object" || body === null) return {};
  const inner = (body as { error?: unknown }).error;
  if (typeof inner === "object" && inner !== null) return inner as Detail;
  const message = (body as { message?: unknown }).message;
  return typeof message === "string" ? { message } : {};
}

function retryAfter(response: Response): number {
  const header = response.headers.get("retry-after");
  const seconds = header === null ? Number.NaN : Number.parseInt(header, 10);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : DEFAULT_RETRY_SECONDS;
}

/** The typed error for a response that was not a success. */
export function errorFromResponse(response: Response, body: unknown): ApiError {
  const detail = detailOf(body);
  const message = detail.message ?? response.statusText ?? "The request failed.";
  switch (response.status) {
    case 400:
      return detail.code === "invalid_grant"
        ? { kind: "grant_rejected", message }
        : { kind: "validation", field: detail.field ?? null, message };
    case 401:
      return { kind: "unauthorized", message: "Your session has ended. Sign in again." };
    case 404:
      return { kind: "not_found", message };
    case 409:
      // The only conflict the API reports: the account's grant must be linked again.
      return { kind: "needs_reauth", message };
    case 413:
      return { kind: "validation", field: null, message };
    case 429:
      return { kind: "rate_limited", retryAfterSeconds: retryAfter(response), message };
    case 503:
      return { kind: "unavailable", message };
    default:
      return { kind: "server", status: response.status, message };
  }
}

export const networkError: ApiError = {
  kind: "network",
  message: "The tastysync API could not be reached. Check your connection and try again.",
};

/** One sentence for a person. */
export function describe(error: ApiError): string {
  switch (error.kind) {
    case "rate_limited":
      return `Too soon: try again in ${error.retryAfterSeconds} s.`;
    case "needs_reauth":
      return "tastytrade no longer accepts this account's access. Reconnect it.";
    case "grant_rejected":
      return "tastytrade refused these credentials. Check the refresh token and client secret.";
    case "server":
      return "Something went wrong on our side. Try again in a moment.";
    default:
      return error.message;
  }
}
