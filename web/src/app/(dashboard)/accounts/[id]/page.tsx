"use client";

import Link from "next/link";
import { useParams } from "next/navigation";
import { useState, type FormEvent, type ReactNode } from "react";
import { Empty, ErrorNotice, Loading } from "@/components/feedback";
import { NetLiqChart } from "@/components/NetLiqChart";
import { StatusBadge } from "@/components/StatusBadge";
import { dateTime, decimal, isNegative, money, percent } from "@/lib/format";
import { useKeysetPages } from "@/lib/useKeysetPages";
import { useResult, type Loadable } from "@/lib/useResult";
import { useServices } from "@/lib/services";
import type { Balance, OrderFilters, Position, TransactionFilters } from "@/services/tastytradeService";

export default function AccountPage() {
  const { id } = useParams<{ id: string }>();
  const { tastytrade } = useServices();
  const detail = useResult(() => tastytrade.getAccount(id), [tastytrade, id]);

  if (detail.value.state === "loading") return <Loading label="Loading the account…" />;
  if (!detail.value.ok) {
    return (
      <>
        <p>
          <Link href="/settings/accounts">← Accounts</Link>
        </p>
        {detail.value.error.kind === "not_found" ? (
          <Empty>This account is not linked to you.</Empty>
        ) : (
          <ErrorNotice error={detail.value.error} onRetry={() => void detail.reload()} />
        )}
      </>
    );
  }
  const { account, synced } = detail.value.value;
  return (
    <>
      <p>
        <Link href="/settings/accounts">← Accounts</Link>
      </p>
      <div className="account-head">
        <h1>Account {account.account_number}</h1>
        <StatusBadge status={account.last_sync_status} />
      </div>
      <p className="muted">
        {account.nickname ?? account.account_type ?? "Account"} · last synced{" "}
        {account.last_successful_sync_at ? dateTime(account.last_successful_sync_at) : "never"}
        {synced.trading_status?.options_level
          ? ` · options level ${synced.trading_status.options_level}`
          : ""}
      </p>
      <Balances id={id} />
      <History id={id} />
      <Positions id={id} />
      <Transactions id={id} />
      <Orders id={id} />
    </>
  );
}

function Section({ title, children }: { title: string; children: ReactNode }) {
  const headingId = `${title.toLowerCase().replaceAll(" ", "-")}-heading`;
  return (
    <section aria-labelledby={headingId} className="section">
      <h2 id={headingId}>{title}</h2>
      {children}
    </section>
  );
}

function Signed({
  value,
  asMoney,
  currency,
}: {
  value: string | null | undefined;
  asMoney?: boolean;
  currency?: string;
}) {
  const text = asMoney ? money(value, currency) : decimal(value);
  return <span className={isNegative(value) ? "negative" : undefined}>{text}</span>;
}

const BALANCE_FIELDS: [keyof Balance, string][] = [
  ["net_liquidating_value", "Net liquidating value"],
  ["cash_balance", "Cash balance"],
  ["equity_buying_power", "Equity buying power"],
  ["derivative_buying_power", "Derivative buying power"],
  ["day_trading_buying_power", "Day-trading buying power"],
  ["maintenance_requirement", "Maintenance requirement"],
  ["pending_cash", "Pending cash"],
];

function Balances({ id }: { id: string }) {
  const { tastytrade } = useServices();
  const balances = useResult(() => tastytrade.balances(id), [tastytrade, id]);
  return (
    <Section title="Balances">
      <Loaded result={balances} what="balances" empty="No balances synced yet.">
        {(rows) =>
          usdFirst(rows).map((balance) => (
            <div key={balance.currency} className="balances">
              <h3 className="currency">
                {balance.currency}{" "}
                <span className="muted">read {dateTime(balance.synced_at ?? balance.updated_at)}</span>
              </h3>
              <dl className="tiles" aria-label={`Balances in ${balance.currency}`}>
                {BALANCE_FIELDS.map(([field, label]) => (
                  <div key={field} className="tile">
                    <dt>{label}</dt>
                    <dd>
                      <Signed value={balance[field] as string | null} asMoney currency={balance.currency} />
                    </dd>
                  </div>
                ))}
              </dl>
            </div>
          ))
        }
      </Loaded>
    </Section>
  );
}

/** The account's base currency first: tastytrade accounts are USD accounts. */
function usdFirst(rows: Balance[]): Balance[] {
  return [...rows].sort((a, b) => Number(b.currency === "USD") - Number(a.currency === "USD"));
}

const RANGES = [
  { label: "1M", days: 31 },
  { label: "3M", days: 92 },
  { label: "1Y", days: 366 },
  { label: "All", days: null },
] as const;

function History({ id }: { id: string }) {
  const { tastytrade } = useServices();
  const [range, setRange] = useState<(typeof RANGES)[number]["label"]>("1Y");
  const days = RANGES.find((r) => r.label === range)?.days ?? null;
  const from =
    days === null ? undefined : new Date(Date.now() - days * 86_400_000).toISOString().slice(0, 10);
  const history = useResult(
    () => tastytrade.balanceHistory(id, { from, points: 500 }),
    [tastytrade, id, from],
  );
  return (
    <Section title="Net liquidating value">
      <div className="segmented" role="group" aria-label="Chart range">
        {RANGES.map((r) => (
          <button
            key={r.label}
            type="button"
            aria-pressed={r.label === range}
            onClick={() => setRange(r.label)}
          >
            {r.label}
          </button>
        ))}
      </div>
      <Loaded result={history} what="the balance history">
        {(series) => <NetLiqChart history={series} />}
      </Loaded>
    </Section>
  );
}

function optionText(position: Position): string {
  const option = position.option;
  if (!option) return "—";
  return `${option.expiration} ${decimal(option.strike)} ${option.option_type === "C" ? "Call" : "Put"}`;
}

function Positions({ id }: { id: string }) {
  const { tastytrade } = useServices();
  const positions = useResult(() => tastytrade.positions(id), [tastytrade, id]);
  return (
    <Section title="Positions">
      <Loaded result={positions} what="positions" empty="No open positions.">
        {(rows) => (
          <TableRegion label="Positions table">
            <table>
              <thead>
                <tr>
                  <th scope="col">Symbol</th>
                  <th scope="col">Option</th>
                  <th scope="col" className="num">
                    Quantity
                  </th>
                  <th scope="col" className="num">
                    Mark
                  </th>
                  <th scope="col" className="num">
                    Avg open
                  </th>
                  <th scope="col" className="num">
                    <abbr title="Delta">Δ</abbr>
                  </th>
                  <th scope="col" className="num">
                    <abbr title="Gamma">Γ</abbr>
                  </th>
                  <th scope="col" className="num">
                    <abbr title="Theta">Θ</abbr>
                  </th>
                  <th scope="col" className="num">
                    Vega
                  </th>
                  <th scope="col" className="num">
                    <abbr title="Implied volatility">IV</abbr>
                  </th>
                  <th scope="col">Greeks as of</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((p) => (
                  <tr key={p.symbol} data-symbol={p.symbol}>
                    <th scope="row">{p.underlying_symbol && p.option ? p.underlying_symbol : p.symbol}</th>
                    <td>{optionText(p)}</td>
                    <td className="num">
                      <Signed value={p.quantity} />
                    </td>
                    <td className="num">{money(p.mark)}</td>
                    <td className="num">{money(p.average_open_price)}</td>
                    <td className="num">{decimal(p.greeks?.delta)}</td>
                    <td className="num">{decimal(p.greeks?.gamma)}</td>
                    <td className="num">{decimal(p.greeks?.theta)}</td>
                    <td className="num">{decimal(p.greeks?.vega)}</td>
                    <td className="num">{percent(p.greeks?.implied_volatility)}</td>
                    <td>{p.greeks ? dateTime(p.greeks.as_of) : "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableRegion>
        )}
      </Loaded>
    </Section>
  );
}

/** A filter form whose values apply on submit, so typing does not fire a request per key. */
function useFilters<T extends Record<string, string>>(initial: T, onApply: () => void) {
  const [draft, setDraft] = useState<T>(initial);
  const [applied, setApplied] = useState<T>(initial);
  return {
    draft,
    applied,
    set: (key: keyof T, value: string) => setDraft((d) => ({ ...d, [key]: value })),
    submit: (event: FormEvent) => {
      event.preventDefault();
      setApplied(draft);
      onApply();
    },
  };
}

/**
 * A section's data in its three other states (loading, failed with a retry, empty) or, once
 * there is some, as `children` draws it.
 */
function Loaded<T>(props: {
  result: { value: Loadable<T>; reload: () => Promise<void> };
  what: string;
  empty?: string;
  children: (value: T) => ReactNode;
}) {
  const { value, reload } = props.result;
  if (value.state === "loading") return <Loading label={`Loading ${props.what}…`} />;
  if (!value.ok) return <ErrorNotice error={value.error} onRetry={() => void reload()} />;
  if (props.empty !== undefined && isEmpty(value.value)) return <Empty>{props.empty}</Empty>;
  return <>{props.children(value.value)}</>;
}

function isEmpty(value: unknown): boolean {
  if (Array.isArray(value)) return value.length === 0;
  const items = (value as { items?: unknown[] }).items;
  return Array.isArray(items) && items.length === 0;
}

/** A table that scrolls sideways on its own at phone width, reachable by keyboard. */
function TableRegion({ label, children }: { label: string; children: ReactNode }) {
  return (
    <div className="table-wrap" tabIndex={0} role="region" aria-label={label}>
      {children}
    </div>
  );
}

/** A page of a keyset-paged table with Previous and Next. */
function KeysetTable(props: {
  label: string;
  pages: ReturnType<typeof useKeysetPages>;
  nextCursor: string | null | undefined;
  children: ReactNode;
}) {
  const { label, pages, nextCursor } = props;
  return (
    <>
      <TableRegion label={`${label} table`}>{props.children}</TableRegion>
      <nav className="pager" aria-label={`${label} pages`}>
        <button type="button" className="button" disabled={pages.page === 1} onClick={pages.previous}>
          Previous
        </button>
        <span aria-live="polite">Page {pages.page}</span>
        <button
          type="button"
          className="button"
          disabled={!nextCursor}
          onClick={() => nextCursor && pages.next(nextCursor)}
        >
          Next
        </button>
      </nav>
    </>
  );
}

function FilterField(props: {
  id: string;
  label: string;
  type?: string;
  value: string;
  onChange: (v: string) => void;
}) {
  return (
    <div className="field">
      <label htmlFor={props.id}>{props.label}</label>
      <input
        id={props.id}
        type={props.type ?? "text"}
        value={props.value}
        onChange={(e) => props.onChange(e.target.value)}
      />
    </div>
  );
}

const PAGE_SIZE = 50;

function Transactions({ id }: { id: string }) {
  const { tastytrade } = useServices();
  const pages = useKeysetPages();
  const filters = useFilters({ from: "", to: "", symbol: "", type: "" }, pages.reset);
  const query: TransactionFilters = filters.applied;
  const page = useResult(
    () => tastytrade.transactions(id, query, { cursor: pages.cursor, limit: PAGE_SIZE }),
    [tastytrade, id, JSON.stringify(query), pages.cursor],
  );
  return (
    <Section title="Transactions">
      <form className="filters" onSubmit={filters.submit} aria-label="Filter transactions">
        <FilterField
          id="tx-from"
          label="From"
          type="date"
          value={filters.draft.from}
          onChange={(v) => filters.set("from", v)}
        />
        <FilterField
          id="tx-to"
          label="To"
          type="date"
          value={filters.draft.to}
          onChange={(v) => filters.set("to", v)}
        />
        <FilterField
          id="tx-symbol"
          label="Symbol"
          value={filters.draft.symbol}
          onChange={(v) => filters.set("symbol", v)}
        />
        <FilterField
          id="tx-type"
          label="Type"
          value={filters.draft.type}
          onChange={(v) => filters.set("type", v)}
        />
        <button type="submit" className="button">
          Apply
        </button>
      </form>
      <Loaded result={page} what="transactions" empty="No transactions match.">
        {({ items, next_cursor }) => (
          <KeysetTable label="Transactions" pages={pages} nextCursor={next_cursor}>
            <table>
              <thead>
                <tr>
                  <th scope="col">Executed</th>
                  <th scope="col">Type</th>
                  <th scope="col">Symbol</th>
                  <th scope="col">Action</th>
                  <th scope="col" className="num">
                    Quantity
                  </th>
                  <th scope="col" className="num">
                    Price
                  </th>
                  <th scope="col" className="num">
                    Net value
                  </th>
                  <th scope="col">Description</th>
                </tr>
              </thead>
              <tbody>
                {items.map((t) => (
                  <tr key={t.id} data-id={t.id}>
                    <td>{dateTime(t.executed_at)}</td>
                    <td>
                      {t.transaction_type}
                      {t.transaction_sub_type ? ` · ${t.transaction_sub_type}` : ""}
                    </td>
                    <td>{t.symbol ?? "—"}</td>
                    <td>{t.action ?? "—"}</td>
                    <td className="num">{decimal(t.quantity)}</td>
                    <td className="num">{money(t.price, t.currency ?? "USD")}</td>
                    <td className="num">
                      <Signed value={t.net_value} asMoney currency={t.currency ?? "USD"} />
                    </td>
                    <td className="description">{t.description ?? ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </KeysetTable>
        )}
      </Loaded>
    </Section>
  );
}

const ORDER_STATUSES = ["", "Filled", "Live", "Received", "Cancelled", "Rejected", "Expired"];

function Orders({ id }: { id: string }) {
  const { tastytrade } = useServices();
  const pages = useKeysetPages();
  const filters = useFilters({ status: "", from: "", to: "", underlying_symbol: "" }, pages.reset);
  const query: OrderFilters = filters.applied;
  const page = useResult(
    () => tastytrade.orders(id, query, { cursor: pages.cursor, limit: PAGE_SIZE }),
    [tastytrade, id, JSON.stringify(query), pages.cursor],
  );
  return (
    <Section title="Orders">
      <form className="filters" onSubmit={filters.submit} aria-label="Filter orders">
        <div className="field">
          <label htmlFor="order-status">Status</label>
          <select
            id="order-status"
            value={filters.draft.status}
            onChange={(e) => filters.set("status", e.target.value)}
          >
            {ORDER_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s || "Any"}
              </option>
            ))}
          </select>
        </div>
        <FilterField
          id="order-from"
          label="From"
          type="date"
          value={filters.draft.from}
          onChange={(v) => filters.set("from", v)}
        />
        <FilterField
          id="order-to"
          label="To"
          type="date"
          value={filters.draft.to}
          onChange={(v) => filters.set("to", v)}
        />
        <FilterField
          id="order-underlying"
          label="Underlying"
          value={filters.draft.underlying_symbol}
          onChange={(v) => filters.set("underlying_symbol", v)}
        />
        <button type="submit" className="button">
          Apply
        </button>
      </form>
      <Loaded result={page} what="orders" empty="No orders match.">
        {({ items, next_cursor }) => (
          <KeysetTable label="Orders" pages={pages} nextCursor={next_cursor}>
            <table>
              <thead>
                <tr>
                  <th scope="col">Received</th>
                  <th scope="col">Underlying</th>
                  <th scope="col">Type</th>
                  <th scope="col">Status</th>
                  <th scope="col">Legs and fills</th>
                  <th scope="col" className="num">
                    Price
                  </th>
                </tr>
              </thead>
              <tbody>
                {items.map((o) => (
                  <tr key={o.id} data-id={o.id}>
                    <td>{dateTime(o.received_at)}</td>
                    <td>{o.underlying_symbol ?? "—"}</td>
                    <td>
                      {o.order_type ?? "—"}
                      {o.time_in_force ? ` · ${o.time_in_force}` : ""}
                    </td>
                    <td>{o.status}</td>
                    <td>
                      <ul className="legs">
                        {o.legs.map((leg, i) => (
                          <li key={`${leg.symbol}-${i}`}>
                            {leg.action ?? ""} {decimal(leg.quantity)} {leg.symbol}
                            {leg.fills.length > 0 &&
                              ` · ${leg.fills.length} fill${leg.fills.length === 1 ? "" : "s"} @ ${leg.fills
                                .map((f) => money(f.fill_price))
                                .join(", ")}`}
                          </li>
                        ))}
                      </ul>
                    </td>
                    <td className="num">{money(o.price)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </KeysetTable>
        )}
      </Loaded>
    </Section>
  );
}
