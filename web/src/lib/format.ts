/**
 * Display of the API's exact values. Money and quantities arrive as decimal strings with the
 * sign already applied; they are formatted as strings, never through floating point, so what
 * the page shows is exactly what was synced.
 */

/** `-12345.5` → `-12,345.50`; at least `minFraction` decimals, none dropped. */
export function decimal(value: string | null | undefined, minFraction = 0): string {
  if (value === null || value === undefined || value === "") return "—";
  const match = /^([+-]?)(\d+)(?:\.(\d+))?$/.exec(value.trim());
  if (!match) return value;
  const [, sign = "", whole = "0", fraction = ""] = match;
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const padded = fraction.padEnd(minFraction, "0");
  const isZero = /^0*$/.test(whole + fraction);
  const shownSign = sign === "-" && !isZero ? "−" : "";
  return `${shownSign}${grouped}${padded ? `.${padded}` : ""}`;
}

/** Money with two decimals at least and the currency's symbol when it has a common one. */
export function money(value: string | null | undefined, currency = "USD"): string {
  const text = decimal(value, 2);
  if (text === "—") return text;
  const symbol = currency === "USD" ? "$" : "";
  const negative = text.startsWith("−");
  const body = negative ? text.slice(1) : text;
  return symbol ? `${negative ? "−" : ""}${symbol}${body}` : `${text} ${currency}`;
}

export function isNegative(value: string | null | undefined): boolean {
  return typeof value === "string" && value.trim().startsWith("-") && !/^-0*(\.0*)?$/.test(value.trim());
}

/** A timestamp in UTC, to the minute: the same for every viewer and every render. */
export function dateTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

export function date(iso: string | null | undefined): string {
  return iso ? iso.slice(0, 10) : "—";
}

/** A fraction such as implied volatility (`0.2345`) as a percentage (`23.45%`), exactly. */
export function percent(value: string | null | undefined): string {
  if (value === null || value === undefined || value === "") return "—";
  const match = /^([+-]?)(\d+)(?:\.(\d+))?$/.exec(value.trim());
  if (!match) return value;
  const [, sign = "", whole = "0", fraction = ""] = match;
  // Moving the point two places right is exact; two decimals are kept, cut, not rounded.
  const digits = `${whole}${fraction.padEnd(2, "0")}`;
  const point = whole.length + 2;
  const integer = digits.slice(0, point).replace(/^0+(?=\d)/, "");
  const kept = digits.slice(point, point + 2).replace(/0+$/, "");
  const trimmed = kept ? `${integer}.${kept}` : integer;
  return `${sign === "-" ? "−" : ""}${trimmed}%`;
}
