import { rowsWritten, type SyncTask } from "@/services/syncService";

const STAGES: Record<string, string> = {
  accounts: "Reading accounts",
  balances: "Balances",
  positions: "Positions",
  transactions: "Transactions",
  orders: "Orders",
  balance_snapshots: "Balance history",
  done: "Done",
};

const KINDS: Record<SyncTask["kind"], string> = {
  full: "Full sync",
  incremental: "Hourly sync",
  deep: "Daily deep sync",
  manual: "Manual sync",
  realtime: "Real-time sync",
};

/** A sync's live progress: its stage, percentage and the rows written so far. */
export function SyncProgress({ task, label }: { task: SyncTask; label: string }) {
  const percent = Math.min(100, Math.max(0, task.progress_percentage));
  const stage = task.stage ? (STAGES[task.stage] ?? task.stage.replaceAll("_", " ")) : "Queued";
  const rows = rowsWritten(task);
  return (
    <div className="progress">
      <div
        className="progress-track"
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent}
        aria-valuetext={`${KINDS[task.kind]}: ${percent}%, ${stage}`}
      >
        <div className="progress-fill" style={{ width: `${percent}%` }} />
      </div>
      <p className="progress-text" aria-live="polite">
        {KINDS[task.kind]}: {stage} · {percent}% · {rows.toLocaleString("en-US")} rows written
      </p>
    </div>
  );
}
