import { describe, expect, it } from "vitest";
import { createSyncService, rowsWritten, type SyncTask } from "./syncService";
import { recordingApi } from "@/test/recordingApi";

const ACCOUNT = "6f1c1c1e-8a51-4c0e-9d5a-0d1f5e0c1a11";
const TASK = "0b8f7a52-3c9e-4b4f-8a43-2c5a7c1d9e01";

function task(status: SyncTask["status"], progress: number, written: Record<string, number> = {}): SyncTask {
  return {
    task_id: TASK,
    account_id: ACCOUNT,
    kind: "manual",
    status,
    progress_percentage: progress,
    stage: status === "completed" ? "done" : "transactions",
    details: "",
    counts: { read: {}, written, rejected: {}, removed: {}, warnings: {} },
    created_at: "2026-12-01T10:00:00Z",
    last_updated: "2026-12-01T10:00:05Z",
  } as SyncTask;
}

const noWait = async () => {};

describe("the sync service", () => {
  it("reports the cooldown's length when a manual sync comes too soon", async () => {
    const { api } = recordingApi(() => ({
      status: 429,
      headers: { "retry-after": "42" },
      body: { error: { code: "rate_limited", message: "wait" } },
    }));

    const triggered = await createSyncService(api).trigger(ACCOUNT);

    expect(triggered).toEqual({
      ok: false,
      error: { kind: "rate_limited", retryAfterSeconds: 42, message: "wait" },
    });
  });

  it("says the account must be reconnected when the API answers 409", async () => {
    const { api } = recordingApi(() => ({
      status: 409,
      body: { error: { code: "conflict", message: "link it again" } },
    }));

    const triggered = await createSyncService(api).trigger(ACCOUNT);

    expect(triggered.ok || triggered.error.kind).toBe("needs_reauth");
  });

  it("follows a task until it completes, reporting every state read", async () => {
    const states = [
      task("pending", 0),
      task("in_progress", 40, { transactions: 100 }),
      task("completed", 100, { transactions: 250 }),
    ];
    const { api, requests } = recordingApi(() => ({
      status: 200,
      body: states[Math.min(requests.length - 1, 2)],
    }));
    const seen: number[] = [];

    const ended = await createSyncService(api).follow(TASK, {
      onUpdate: (t) => seen.push(t.progress_percentage),
      sleep: noWait,
    });

    expect(seen).toEqual([0, 40, 100]);
    expect(ended.ok && rowsWritten(ended.value)).toBe(250);
    expect(requests.every((r) => r.url.endsWith(`/api/v1/sync/status/${TASK}`))).toBe(true);
  });

  it("keeps following through brief outages but not through a missing task", async () => {
    let calls = 0;
    const { api } = recordingApi(() => {
      calls += 1;
      return calls < 3
        ? { status: 503, body: { error: { code: "unavailable", message: "busy" } } }
        : { status: 200, body: task("completed", 100) };
    });

    const ended = await createSyncService(api).follow(TASK, { onUpdate: () => {}, sleep: noWait });
    expect(ended.ok).toBe(true);

    const gone = recordingApi(() => ({
      status: 404,
      body: { error: { code: "not_found", message: "no task" } },
    }));
    const lost = await createSyncService(gone.api).follow(TASK, { onUpdate: () => {}, sleep: noWait });
    expect(lost.ok || lost.error.kind).toBe("not_found");
    expect(gone.requests).toHaveLength(1);
  });

  it("stops polling when the page lets go", async () => {
    const control = new AbortController();
    const { api, requests } = recordingApi(() => ({ status: 200, body: task("in_progress", 10) }));

    const ended = await createSyncService(api).follow(TASK, {
      onUpdate: () => control.abort(),
      sleep: noWait,
      signal: control.signal,
    });

    expect(requests).toHaveLength(1);
    expect(ended.ok && ended.value.progress_percentage).toBe(10);
  });
});
