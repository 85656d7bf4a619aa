import { describe, expect, it } from "vitest";
import { decimal, isNegative, money, percent } from "./format";

describe("formatting exact values", () => {
  it("groups digits without passing through floating point", () => {
    expect(decimal("12345678901234567890.123456789")).toBe("12,345,678,901,234,567,890.123456789");
    expect(money("0.1")).toBe("$0.10");
    expect(money("-1234.5")).toBe("−$1,234.50");
    expect(money("5.25", "EUR")).toBe("5.25 EUR");
  });

  it("shows no sign on a negative zero and a dash for missing values", () => {
    expect(decimal("-0.00")).toBe("0.00");
    expect(isNegative("-0.00")).toBe(false);
    expect(isNegative("-0.01")).toBe(true);
    expect(money(null)).toBe("—");
  });

  it("writes a fraction as a percentage by moving the point", () => {
    expect(percent("0.2345")).toBe("23.45%");
    expect(percent("1.5")).toBe("150%");
    expect(percent("0.000123")).toBe("0.01%");
  });
});
