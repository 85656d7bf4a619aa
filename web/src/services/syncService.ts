/**
 * Starting and following syncs. A sync is a task: `trigger` queues one (or answers with the
 * one already on its way), `follow` polls it until it ends.
 */
import { call, type Api, type Schemas } from "@/api/client";
import type { ApiError, Result } from "@/lib/errors";

export type SyncTask = Schemas["SyncTaskStatus"];
export type TaskStatus = Schemas["TaskStatus"];

const TERMINAL: ReadonlySet<TaskStatus> = new Set(["completed", "failed", "needs_reauth"]);

export function isFinished(task: SyncTask): boolean {
  return TERMINAL.has(task.status);
}

/** Rows written so far, over every entity. */
export function rowsWritten(task: SyncTask): number {
  return Object.values(task.counts.written ?? {}).reduce((sum, n) => sum + n, 0);
}

export type FollowOptions = {
  /** Called with each state read, the last one included. */
  onUpdate: (task: SyncTask) => void;
  signal?: AbortSignal;
  intervalMs?: number;
  /** Test seam: how to wait between polls. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
};

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** How many failed polls in a row end the following (the task itself goes on). */
const MAX_POLL_FAILURES = 5;

export function createSyncService(api: Api) {
  const status = (taskId: string): Promise<Result<SyncTask>> =>
    call(api.GET("/sync/status/{task_id}", { params: { path: { task_id: taskId } } }));
  return {
    /** A manual sync; `rate_limited` carries the cooldown, `needs_reauth` a dead grant. */
    trigger(accountId: string): Promise<Result<SyncTask>> {
      return call(
        api.POST("/sync/tastytrade/{account_db_id}/trigger", {
          params: { path: { account_db_id: accountId } },
        }),
      );
    },

    status,

    /** The account's recent tasks, newest first. */
    recentTasks(accountId: string): Promise<Result<SyncTask[]>> {
      return call(
        api.GET("/tastytrade-accounts/{account_db_id}/sync-tasks", {
          params: { path: { account_db_id: accountId } },
        }),
      );
    },

    /**
     * Polls the task until it ends or `signal` aborts. Answers the last state read, or the
     * error that stopped the polling (after a few failures in a row, or at once for one that
     * a retry cannot mend).
     */
    async follow(taskId: string, options: FollowOptions): Promise<Result<SyncTask>> {
      const sleep = options.sleep ?? abortableSleep;
      const interval = options.intervalMs ?? 1000;
      let failures = 0;
      let lastError: ApiError | null = null;
      let last: SyncTask | null = null;
      while (!options.signal?.aborted) {
        const read = await status(taskId);
        if (read.ok) {
          failures = 0;
          last = read.value;
          options.onUpdate(read.value);
          if (isFinished(read.value)) return read;
        } else {
          lastError = read.error;
          const transient =
            read.error.kind === "network" ||
            read.error.kind === "unavailable" ||
            read.error.kind === "server";
          failures += 1;
          if (!transient || failures >= MAX_POLL_FAILURES) return read;
        }
        await sleep(interval, options.signal);
      }
      if (last) return { ok: true, value: last };
      return { ok: false, error: lastError ?? { kind: "network", message: "Stopped following the sync." } };
    },
  };
}

export type SyncService = ReturnType<typeof createSyncService>;
