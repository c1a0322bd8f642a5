// Small SVG charts: no library, no network.
import { h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/**
 * Stacked columns over time. `series` = [{start, ...}], `layers` =
 * [{key, label, className}] stacked bottom-up; `valueOf(point, key)` a number;
 * `tick(point)` the x label; `format(n)` the y labels and tooltips.
 */
export function columns({ title, series, layers, valueOf, tick, format }) {
  const width = 640;
  const height = 200;
  const left = 76;
  const bottom = 22;
  const top = 8;
  const plotW = width - left - 8;
  const plotH = height - top - bottom;
  const totals = series.map((p) => layers.reduce((s, l) => s + valueOf(p, l.key), 0));
  const max = Math.max(...totals, 0) || 1;
  const step = plotW / Math.max(series.length, 1);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart", "aria-label": title });
  for (const f of [0, 0.5, 1]) {
    const y = top + plotH * (1 - f);
    chart.append(svg("line", { x1: left, x2: width - 8, y1: y, y2: y, class: "grid" }));
    chart.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, format(max * f)));
  }
  const every = Math.ceil(series.length / 8);
  series.forEach((point, i) => {
    let base = 0;
    const x = left + i * step + step * 0.1;
    const tip = [tick(point)];
    for (const layer of layers) {
      const v = valueOf(point, layer.key);
      tip.push(`${layer.label}: ${format(v)}`);
      if (v > 0) {
        const hgt = (v / max) * plotH;
        chart.append(svg("rect", { x, y: top + plotH - base - hgt, width: step * 0.8, height: hgt, class: `bar ${layer.className}` }));
        base += hgt;
      }
    }
    const hit = svg("rect", { x: left + i * step, y: top, width: step, height: plotH, class: "hit" }, svg("title", {}, tip.join("\n")));
    chart.append(hit);
    if (i % every === 0) {
      chart.append(svg("text", { x: left + i * step + step / 2, y: height - 6, "text-anchor": "middle", class: "axis" }, tick(point)));
    }
  });
  const legend = h("ul.legend", layers.map((l) => h("li", h(`span.swatch.${l.className}`), l.label)));
  return h("figure.chart-box", h("figcaption", title), chart, layers.length > 1 ? legend : null);
}

/** Horizontal bars: items = [{label, value, text}] largest first. */
export function bars({ title, items, empty }) {
  const max = Math.max(...items.map((i) => i.value), 0) || 1;
  return h(
    "figure.chart-box",
    h("figcaption", title),
    items.length === 0
      ? h("p.empty", empty)
      : h(
          "ul.hbars",
          items.map((i) =>
            h(
              "li",
              h("span.hbar-label", { title: i.label }, i.label),
              h("span.hbar-track", h("span.hbar", { style: { width: `${Math.max((i.value / max) * 100, 1).toFixed(1)}%` } })),
              h("span.hbar-value", i.text),
            ),
          ),
        ),
  );
}
