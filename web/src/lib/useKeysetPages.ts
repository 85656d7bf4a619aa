"use client";

import { useState } from "react";

/**
 * Keyset paging: the cursors of the pages before this one, so "Previous" goes back exactly
 * where it was while "Next" follows the API's `next_cursor`. A new filter starts over.
 */
export function useKeysetPages() {
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const current = cursors[cursors.length - 1];
  return {
    cursor: current,
    page: cursors.length,
    next: (cursor: string) => setCursors((c) => [...c, cursor]),
    previous: () => setCursors((c) => (c.length > 1 ? c.slice(0, -1) : c)),
    reset: () => setCursors([undefined]),
  };
}
