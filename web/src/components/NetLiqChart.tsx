"use client";

import { AreaSeries, ColorType, createChart, type UTCTimestamp } from "lightweight-charts";
import { useEffect, useMemo, useRef } from "react";
import { money } from "@/lib/format";
import type { BalanceHistory } from "@/services/tastytradeService";

type Point = { day: string; value: string };

/**
 * The chart's points: the end-of-day snapshots' net liquidating value, or, where the broker
 * sent none, the close of its net-liq history bars.
 */
export function chartPoints(history: BalanceHistory): Point[] {
  const snapshots = history.points
    .filter((p) => p.net_liquidating_value !== null && p.net_liquidating_value !== undefined)
    .map((p) => ({ day: p.date, value: p.net_liquidating_value as string }));
  if (snapshots.length > 0) return snapshots;
  const byDay = new Map<string, string>();
  for (const bar of history.net_liq) {
    if (bar.close) byDay.set(bar.time.slice(0, 10), bar.close);
  }
  return [...byDay].map(([day, value]) => ({ day, value }));
}

/** Net liquidating value over time, with a text summary that is also what screen readers read. */
export function NetLiqChart({ history }: { history: BalanceHistory }) {
  const container = useRef<HTMLDivElement>(null);
  const points = useMemo(() => chartPoints(history), [history]);
  useEffect(() => {
    const element = container.current;
    if (!element || points.length === 0) return;
    const chart = createChart(element, {
      autoSize: true,
      layout: {
        background: { type: ColorType.Solid, color: "transparent" },
        textColor: "#334155",
        // The attribution the library's licence asks for is the caption's link: a link inside
        // the drawing would be a focus stop screen readers cannot explain.
        attributionLogo: false,
      },
      grid: { vertLines: { visible: false }, horzLines: { color: "#e2e8f0" } },
      rightPriceScale: { borderVisible: false },
      localization: {
        priceFormatter: (price: number) => price.toLocaleString("en-US", { maximumFractionDigits: 0 }),
      },
      timeScale: { borderVisible: false },
      handleScroll: false,
      handleScale: false,
    });
    const series = chart.addSeries(AreaSeries, {
      lineColor: "#1d4ed8",
      topColor: "rgba(29, 78, 216, 0.25)",
      bottomColor: "rgba(29, 78, 216, 0.02)",
      lineWidth: 2,
    });
    // The chart plots floats; the exact values stay in the text around it.
    series.setData(
      points.map((p) => ({
        time: (Date.parse(`${p.day}T00:00:00Z`) / 1000) as UTCTimestamp,
        value: Number(p.value),
      })),
    );
    chart.timeScale().fitContent();
    return () => chart.remove();
  }, [points]);

  const first = points[0];
  const last = points[points.length - 1];
  const summary =
    first && last
      ? `Net liquidating value over ${points.length} days, from ${money(first.value, history.currency)} on ${first.day} to ${money(last.value, history.currency)} on ${last.day}.`
      : "No balance history yet.";
  return (
    <figure className="chart-figure" data-points={points.length}>
      {/* The drawing says nothing the caption does not: assistive technology reads the caption. */}
      <div ref={container} className="chart" aria-hidden="true" />
      <figcaption className="muted">
        {summary}{" "}
        <a href="https://www.tradingview.com/" rel="noopener noreferrer">
          Chart by TradingView Lightweight Charts
        </a>
      </figcaption>
    </figure>
  );
}
