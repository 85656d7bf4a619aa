/**
 * The code flow's browser half. `state` is signed by the API and bound to the user; it is
 * also kept for the tab (session storage: not a secret, and gone with the tab) so the
 * callback only finishes a flow this tab started, with the environment it was started for.
 */
import type { Environment } from "@/services/tastytradeService";

const KEY = "tastysync.pending-link";

export type PendingLink = { state: string; environment: Environment; redirectUri: string };

export function callbackUri(origin: string): string {
  return `${origin}/callback`;
}

export function rememberPendingLink(link: PendingLink): void {
  window.sessionStorage.setItem(KEY, JSON.stringify(link));
}

/** The pending flow `state` belongs to, once: a second callback with it finds nothing. */
export function takePendingLink(state: string): PendingLink | null {
  const raw = window.sessionStorage.getItem(KEY);
  if (!raw) return null;
  const pending = JSON.parse(raw) as PendingLink;
  if (pending.state !== state) return null;
  window.sessionStorage.removeItem(KEY);
  return pending;
}
