"use client";

import { useCallback, useEffect, useRef, useState } from "react";
import type { Result } from "@/lib/errors";

export type Loadable<T> = { state: "loading" } | ({ state: "done" } & Result<T>);

/**
 * Runs `load` on mount and whenever `deps` change; `reload` runs it again. An answer that
 * arrives after a newer request started is dropped, so filters typed quickly never show a
 * stale page.
 */
export function useResult<T>(load: () => Promise<Result<T>>, deps: readonly unknown[]) {
  const [value, setValue] = useState<Loadable<T>>({ state: "loading" });
  const generation = useRef(0);
  const run = useCallback(async (quiet: boolean) => {
    const mine = ++generation.current;
    if (!quiet) setValue({ state: "loading" });
    const result = await load();
    if (mine === generation.current) setValue({ state: "done", ...result });
    // `load` is a new closure on every render; `deps` say when it means a new request.
  }, deps);
  useEffect(() => {
    void run(false);
  }, [run]);
  return { value, reload: () => run(true) };
}
