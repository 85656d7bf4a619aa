import type { Schemas } from "@/api/client";

const LABELS: Record<Schemas["AccountStatus"], string> = {
  PENDING: "Waiting to sync",
  RUNNING: "Syncing",
  SUCCESS: "Synced",
  FAILED: "Sync failed",
  NEEDS_REAUTH: "Needs reconnect",
};

export function StatusBadge({ status }: { status: Schemas["AccountStatus"] }) {
  return <span className={`badge badge-${status.toLowerCase()}`}>{LABELS[status]}</span>;
}
