// A stacked bar chart per minute in plain SVG (no library): bars for every minute of the window, zero where
// the API sent no bucket; each bar's title tells its counts.
import { h, fmtNumber } from "./ui.js";

export const OUTCOMES = [
  { key: "accepted", label: "accepted", color: "var(--ok)" },
  { key: "duplicate", label: "duplicate", color: "var(--info)" },
  { key: "rejected", label: "rejected", color: "var(--warn)" },
  { key: "failed", label: "failed", color: "var(--bad)" },
];

const MINUTE = 60_000;

export function stackedMinutes(buckets, { minutes, series = OUTCOMES, now = Date.now() }) {
  const end = Math.floor(now / MINUTE) * MINUTE;
  const start = end - (minutes - 1) * MINUTE;
  const byMinute = new Map(buckets.map((b) => [Math.floor(new Date(b.minute).getTime() / MINUTE) * MINUTE, b]));
  const rows = [];
  for (let t = start; t <= end; t += MINUTE) rows.push({ t, bucket: byMinute.get(t) });
  const total = (b) => (b ? series.reduce((sum, s) => sum + (b[s.key] || 0), 0) : 0);
  const max = Math.max(1, ...rows.map((r) => total(r.bucket)));
  const width = 1000, height = 200, barWidth = width / rows.length;
  const gap = barWidth > 3 ? barWidth * 0.15 : 0;

  const svg = h("svg:svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", class: "chart-svg",
    role: "img", "aria-label": `files per minute, last ${minutes} minutes` });
  for (const frac of [0.25, 0.5, 0.75]) {
    svg.append(h("svg:line", { x1: 0, x2: width, y1: height * frac, y2: height * frac, class: "chart-grid" }));
  }
  rows.forEach((row, i) => {
    if (!row.bucket) return;
    const group = h("svg:g", { class: "chart-bar" });
    const when = new Date(row.t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    group.append(h("svg:title", {}, `${when}: ` + series.map((s) => `${s.label} ${row.bucket[s.key] || 0}`).join(", ")));
    let y = height;
    for (const s of series) {
      const value = row.bucket[s.key] || 0;
      if (!value) continue;
      const barHeight = (value / max) * height;
      y -= barHeight;
      group.append(h("svg:rect", { x: i * barWidth + gap / 2, y, width: Math.max(barWidth - gap, 0.8), height: barHeight, fill: s.color }));
    }
    svg.append(group);
  });

  const ticks = 6;
  const labels = [];
  for (let k = 0; k <= ticks; k += 1) {
    const t = start + Math.round(((rows.length - 1) * k) / ticks) * MINUTE;
    const d = new Date(t);
    labels.push(h("span", {}, minutes > 180 ? d.toLocaleString(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" })
      : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })));
  }
  const sums = Object.fromEntries(series.map((s) => [s.key, rows.reduce((sum, r) => sum + ((r.bucket && r.bucket[s.key]) || 0), 0)]));
  return h("div", { class: "chart" },
    h("div", { class: "chart-legend" }, series.map((s) =>
      h("span", { class: "legend-item" }, h("i", { style: `background:${s.color}` }), `${s.label} `, h("b", {}, fmtNumber(sums[s.key]))))),
    h("div", { class: "chart-body" },
      h("div", { class: "chart-y" }, h("span", {}, fmtNumber(max)), h("span", {}, max % 2 === 0 ? fmtNumber(max / 2) : ""), h("span", {}, "0")),
      h("div", { class: "chart-plot" }, svg, h("div", { class: "chart-x" }, labels))));
}
