"use client";

import Link from "next/link";
import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { ConfirmDialog } from "@/components/ConfirmDialog";
import { Empty, ErrorNotice, Loading } from "@/components/feedback";
import { StatusBadge } from "@/components/StatusBadge";
import { SyncProgress } from "@/components/SyncProgress";
import { describe, type ApiError } from "@/lib/errors";
import { dateTime } from "@/lib/format";
import { callbackUri, rememberPendingLink } from "@/lib/oauth";
import { useServices } from "@/lib/services";
import { useResult } from "@/lib/useResult";
import { isFinished, type SyncTask } from "@/services/syncService";
import type { Account, Environment } from "@/services/tastytradeService";

export default function AccountsSettingsPage() {
  const { tastytrade } = useServices();
  const accounts = useResult(() => tastytrade.listAccounts(), [tastytrade]);
  const [notice, setNotice] = useState<string | null>(null);
  const reload = accounts.reload;

  useEffect(() => {
    const linked = new URLSearchParams(window.location.search).get("linked");
    if (linked)
      setNotice(`Linked ${linked} account${linked === "1" ? "" : "s"}; the first sync has started.`);
  }, []);

  return (
    <>
      <h1>tastytrade accounts</h1>
      {notice && (
        <p className="notice notice-success" role="status">
          {notice}
        </p>
      )}
      <ConnectCard />
      <PersonalGrantForm
        onLinked={(linked) => {
          setNotice(
            `Linked ${linked.length} account${linked.length === 1 ? "" : "s"}; the first sync has started.`,
          );
          void reload();
        }}
      />
      <section aria-labelledby="linked-heading">
        <h2 id="linked-heading">Linked accounts</h2>
        {accounts.value.state === "loading" ? (
          <Loading label="Loading your accounts…" />
        ) : !accounts.value.ok ? (
          <ErrorNotice error={accounts.value.error} onRetry={() => void reload()} />
        ) : accounts.value.value.length === 0 ? (
          <Empty>No tastytrade account is linked yet. Connect one above.</Empty>
        ) : (
          <ul className="cards" aria-label="Linked accounts">
            {accounts.value.value.map((account) => (
              <AccountCard key={account.id} account={account} onChanged={() => void reload()} />
            ))}
          </ul>
        )}
      </section>
    </>
  );
}

/** Starts the code flow: tastytrade asks the user, then sends the browser to `/callback`. */
function useStartLink() {
  const { tastytrade } = useServices();
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const start = async (environment: Environment) => {
    setBusy(true);
    setError(null);
    const redirectUri = callbackUri(window.location.origin);
    const started = await tastytrade.startLink(environment, redirectUri);
    if (!started.ok) {
      setError(started.error);
      setBusy(false);
      return;
    }
    rememberPendingLink({ state: started.value.state, environment, redirectUri });
    window.location.assign(started.value.authorize_url);
  };
  return { start, error, busy };
}

function EnvironmentSelect({
  id,
  value,
  onChange,
}: {
  id: string;
  value: Environment;
  onChange: (value: Environment) => void;
}) {
  return (
    <select id={id} value={value} onChange={(e) => onChange(e.target.value as Environment)}>
      <option value="production">Production</option>
      <option value="sandbox">Sandbox (cert)</option>
    </select>
  );
}

function ConnectCard() {
  const [environment, setEnvironment] = useState<Environment>("sandbox");
  const { start, error, busy } = useStartLink();
  return (
    <section className="card" aria-labelledby="connect-heading">
      <h2 id="connect-heading">Connect tastytrade</h2>
      <p className="muted">
        You sign in at tastytrade and allow read access; tastysync never sees your password.
      </p>
      <div className="row">
        <label htmlFor="connect-environment">Environment</label>
        <EnvironmentSelect id="connect-environment" value={environment} onChange={setEnvironment} />
        <button
          type="button"
          className="button button-primary"
          disabled={busy}
          onClick={() => void start(environment)}
        >
          {busy ? "Opening tastytrade…" : "Connect tastytrade"}
        </button>
      </div>
      {error && <ErrorNotice error={error} />}
    </section>
  );
}

function PersonalGrantForm({ onLinked }: { onLinked: (accounts: Account[]) => void }) {
  const { tastytrade } = useServices();
  const [environment, setEnvironment] = useState<Environment>("sandbox");
  const [refreshToken, setRefreshToken] = useState("");
  const [clientSecret, setClientSecret] = useState("");
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const linked = await tastytrade.linkPersonalGrant({ environment, refreshToken, clientSecret });
    // The secrets leave the page's state whatever the answer: retyping beats keeping them.
    setRefreshToken("");
    setClientSecret("");
    setBusy(false);
    if (linked.ok) onLinked(linked.value);
    else setError(linked.error);
  };
  const fieldError = (field: string) =>
    error?.kind === "validation" && error.field === field ? error.message : null;

  return (
    <details className="card">
      <summary>Link a personal grant (advanced)</summary>
      <form onSubmit={(e) => void submit(e)} autoComplete="off" className="stack">
        <p className="muted">
          For a personal OAuth application created in tastytrade&apos;s API settings. The secrets go to
          tastysync encrypted and are not kept in this browser.
        </p>
        <div className="field">
          <label htmlFor="grant-environment">Environment</label>
          <EnvironmentSelect id="grant-environment" value={environment} onChange={setEnvironment} />
        </div>
        <SecretField
          id="refresh-token"
          label="Refresh token"
          value={refreshToken}
          onChange={setRefreshToken}
          error={fieldError("refresh_token")}
        />
        <SecretField
          id="client-secret"
          label="Client secret"
          value={clientSecret}
          onChange={setClientSecret}
          error={fieldError("client_secret")}
        />
        {error && !(error.kind === "validation" && error.field) && <ErrorNotice error={error} />}
        <div>
          <button
            type="submit"
            className="button button-primary"
            disabled={busy || !refreshToken || !clientSecret}
          >
            {busy ? "Linking…" : "Link grant"}
          </button>
        </div>
      </form>
    </details>
  );
}

function SecretField(props: {
  id: string;
  label: string;
  value: string;
  onChange: (value: string) => void;
  error: string | null;
}) {
  return (
    <div className="field">
      <label htmlFor={props.id}>{props.label}</label>
      <input
        id={props.id}
        type="password"
        autoComplete="off"
        spellCheck={false}
        value={props.value}
        onChange={(e) => props.onChange(e.target.value)}
        aria-invalid={props.error ? true : undefined}
        aria-describedby={props.error ? `${props.id}-error` : undefined}
        required
      />
      {props.error && (
        <p id={`${props.id}-error`} className="field-error">
          {props.error}
        </p>
      )}
    </div>
  );
}

function AccountCard({ account, onChanged }: { account: Account; onChanged: () => void }) {
  const { sync, tastytrade, config } = useServices();
  const [task, setTask] = useState<SyncTask | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [cooldownUntil, setCooldownUntil] = useState<number | null>(null);
  const [now, setNow] = useState(() => Date.now());
  const [confirming, setConfirming] = useState(false);
  const following = useRef<AbortController | null>(null);
  const reconnect = useStartLink();
  const label = account.nickname ?? account.account_type ?? "Account";

  const follow = useCallback(
    async (started: SyncTask) => {
      following.current?.abort();
      const control = new AbortController();
      following.current = control;
      setTask(started);
      const ended = await sync.follow(started.task_id, { onUpdate: setTask, signal: control.signal });
      if (control.signal.aborted) return;
      following.current = null;
      if (!ended.ok) setError(ended.error);
      onChanged();
    },
    [sync, onChanged],
  );

  // The account's newest sync is shown, and followed while it runs: one started elsewhere
  // (linking, the schedule) is picked up too. Read again whenever the account's status moves.
  useEffect(() => {
    if (following.current) return;
    let cancelled = false;
    void sync.recentTasks(account.id).then((tasks) => {
      if (cancelled || !tasks.ok || following.current) return;
      const newest = tasks.value[0];
      if (!newest) return;
      if (isFinished(newest)) setTask(newest);
      else void follow(newest);
    });
    return () => {
      cancelled = true;
    };
  }, [account.last_sync_status, account.id, sync, follow]);
  useEffect(() => () => following.current?.abort(), []);

  const coolingDown = cooldownUntil !== null && now < cooldownUntil;
  useEffect(() => {
    if (cooldownUntil === null) return;
    const timer = setInterval(() => {
      const t = Date.now();
      setNow(t);
      if (t >= cooldownUntil) {
        setCooldownUntil(null);
        clearInterval(timer);
      }
    }, 250);
    return () => clearInterval(timer);
  }, [cooldownUntil]);

  const syncNow = async () => {
    setError(null);
    const started = await sync.trigger(account.id);
    if (started.ok) {
      onChanged();
      void follow(started.value);
    } else if (started.error.kind === "rate_limited") {
      setNow(Date.now());
      setCooldownUntil(Date.now() + started.error.retryAfterSeconds * 1000);
    } else {
      setError(started.error);
      if (started.error.kind === "needs_reauth") onChanged();
    }
  };

  const unlink = async () => {
    setConfirming(false);
    const done = await tastytrade.unlink(account.id);
    if (done.ok || done.error.kind === "not_found") onChanged();
    else setError(done.error);
  };

  const running = task !== null && !isFinished(task);
  const needsReauth = account.last_sync_status === "NEEDS_REAUTH";
  const secondsLeft = cooldownUntil === null ? 0 : Math.max(0, Math.ceil((cooldownUntil - now) / 1000));
  const keeps = config.unlinkSyncedData === "keep";

  return (
    <li className="card account-card" aria-label={`Account ${account.account_number}`}>
      <div className="account-head">
        <div>
          <h3>
            <Link href={`/accounts/${account.id}`}>{account.account_number}</Link>
          </h3>
          <p className="muted">
            {label} · {account.environment === "sandbox" ? "Sandbox" : "Production"}
          </p>
        </div>
        <StatusBadge status={account.last_sync_status} />
      </div>
      <dl className="facts">
        <div>
          <dt>Last successful sync</dt>
          <dd>{account.last_successful_sync_at ? dateTime(account.last_successful_sync_at) : "Never"}</dd>
        </div>
        {account.last_error && (
          <div>
            <dt>Last error</dt>
            <dd className="text-error">{account.last_error}</dd>
          </div>
        )}
      </dl>
      {account.quarantined_rows > 0 && (
        <p className="notice notice-warning">
          {account.quarantined_rows} row{account.quarantined_rows === 1 ? "" : "s"} from tastytrade could not
          be stored yet; the synced data is incomplete until a later sync stores them.
        </p>
      )}
      {task && <SyncProgress task={task} label={`Sync progress of ${account.account_number}`} />}
      {coolingDown && (
        <p className="notice" role="status">
          A manual sync ran moments ago; the next can start in {secondsLeft} s.
        </p>
      )}
      {error && <ErrorNotice error={error} />}
      {reconnect.error && <p className="text-error">{describe(reconnect.error)}</p>}
      <div className="actions">
        {needsReauth ? (
          <button
            type="button"
            className="button button-primary"
            disabled={reconnect.busy}
            onClick={() => void reconnect.start(account.environment)}
          >
            Reconnect
          </button>
        ) : (
          <button
            type="button"
            className="button"
            disabled={running || coolingDown}
            onClick={() => void syncNow()}
          >
            {running ? "Syncing…" : "Sync now"}
          </button>
        )}
        <Link className="button" href={`/accounts/${account.id}`}>
          View portfolio
        </Link>
        <button type="button" className="button button-danger-quiet" onClick={() => setConfirming(true)}>
          Unlink
        </button>
      </div>
      <ConfirmDialog
        open={confirming}
        title={`Unlink ${account.account_number}?`}
        confirmLabel="Unlink account"
        onConfirm={() => void unlink()}
        onCancel={() => setConfirming(false)}
      >
        <p>
          tastysync stops syncing this account and deletes the tokens it holds for it (and the grant, when no
          other linked account uses it).
        </p>
        <p>
          {keeps
            ? "Its synced transactions, orders, positions and balances are kept; linking it again resumes from them."
            : "Its synced transactions, orders, positions and balances are deleted with it."}
        </p>
        <p className="muted">
          Nothing changes at tastytrade; revoke tastysync there to withdraw the grant itself.
        </p>
      </ConfirmDialog>
    </li>
  );
}
