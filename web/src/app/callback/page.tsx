"use client";

import Link from "next/link";
import { useRouter } from "next/navigation";
import { useEffect, useRef, useState } from "react";
import { ErrorNotice, Loading } from "@/components/feedback";
import type { ApiError } from "@/lib/errors";
import { takePendingLink } from "@/lib/oauth";
import { useServices } from "@/lib/services";

/** Where tastytrade sends the browser back: finishes the link with `code` and `state`. */
export default function CallbackPage() {
  const { tastytrade } = useServices();
  const router = useRouter();
  const [error, setError] = useState<ApiError | null>(null);
  // A code is single-use: the effect must not post it twice (React runs effects twice in
  // development).
  const posted = useRef(false);

  useEffect(() => {
    if (posted.current) return;
    posted.current = true;
    const query = new URLSearchParams(window.location.search);
    const code = query.get("code");
    const state = query.get("state");
    const refused = query.get("error");
    // The code must not linger in the address bar or the history.
    window.history.replaceState(null, "", "/callback");
    if (refused || !code || !state) {
      setError({
        kind: "validation",
        field: null,
        message: refused
          ? "tastytrade did not grant access."
          : "This page needs the code tastytrade sends back.",
      });
      return;
    }
    const pending = takePendingLink(state);
    if (!pending) {
      setError({
        kind: "validation",
        field: "state",
        message: "This sign-in was not started from this browser tab. Start it again from your accounts.",
      });
      return;
    }
    void tastytrade
      .linkWithCode({ environment: pending.environment, code, state, redirectUri: pending.redirectUri })
      .then((linked) => {
        if (linked.ok) router.replace(`/settings/accounts?linked=${linked.value.length}`);
        else setError(linked.error);
      });
  }, [tastytrade, router]);

  return (
    <main className="container">
      <h1>Connecting tastytrade</h1>
      {error ? (
        <>
          <ErrorNotice error={error} />
          <p>
            <Link href="/settings/accounts">Back to your accounts</Link>
          </p>
        </>
      ) : (
        <Loading label="Linking your tastytrade accounts…" />
      )}
    </main>
  );
}
