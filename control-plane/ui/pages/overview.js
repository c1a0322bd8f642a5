// Overview: traffic and spend over time, who and what spends, what fails,
// live sessions and provider health (admin only).
import { api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { t } from "../lib/i18n.js";
import { clock, count, money, time } from "../lib/format.js";
import { bars, columns } from "../lib/chart.js";

const WINDOWS = ["hour", "day", "week"];

function card(label, value, extra) {
  return h("div.card", h("div.card-label", label), h("div.card-value", value), extra ? h("div.card-extra", extra) : null);
}

export async function render(ctx) {
  const window = WINDOWS.includes(ctx.params.get("window")) ? ctx.params.get("window") : "day";
  const result = await api("GET", `/api/v1/overview?window=${window}`);
  const tabs = h(
    "div.tabs",
    { role: "tablist" },
    WINDOWS.map((w) =>
      h("a.tab", { href: `#/overview?window=${w}`, role: "tab", "aria-selected": w === window ? "true" : "false" }, t(`overview.window_${w}`)),
    ),
  );
  if (!result.ok) return h("section", h("h1", t("nav.overview")), tabs, h("p.form-error", result.error.message));
  const o = result.data;
  const tick = (p) => (window === "week" ? time(p.start, { short: true }) : clock(p.start));
  const traffic = columns({
    title: t("overview.requests_over_time"),
    series: o.series,
    layers: [
      { key: "ok", label: t("overview.ok"), className: "ok" },
      { key: "errors", label: t("overview.errors"), className: "error" },
      { key: "blocked", label: t("overview.blocked"), className: "blocked" },
    ],
    valueOf: (p, key) => (key === "ok" ? Math.max(p.requests - p.errors - p.blocked, 0) : p[key]),
    tick,
    format: (n) => count(Math.round(n)),
  });
  const spend = columns({
    title: t("overview.spend_over_time"),
    series: o.series,
    layers: [{ key: "cost_usd", label: t("overview.spend"), className: "spend" }],
    valueOf: (p) => Number(p.cost_usd),
    tick,
    format: (n) => money(n),
  });
  const topUsers = bars({
    title: t("overview.top_users"),
    empty: t("common.none"),
    items: o.top_users.map((u) => ({ label: u.name, value: Number(u.cost_usd), text: `${money(u.cost_usd)} · ${count(u.requests)}` })),
  });
  const topModels = bars({
    title: t("overview.top_models"),
    empty: t("common.none"),
    items: o.top_models.map((m) => ({ label: m.model, value: Number(m.cost_usd) || m.requests, text: `${money(m.cost_usd)} · ${count(m.requests)}` })),
  });
  const codes = bars({
    title: t("overview.codes"),
    empty: t("common.none"),
    items: o.codes.map((c) => ({ label: c.blocked_by ? `${c.status} ${c.blocked_by}` : String(c.status), value: c.requests, text: count(c.requests) })),
  });
  const health = h(
    "figure.chart-box",
    h("figcaption", t("overview.provider_health")),
    o.providers.length === 0
      ? h("p.empty", t("common.none"))
      : h(
          "ul.health",
          o.providers.map((p) =>
            h(
              "li",
              h(`span.badge.circuit-${p.enabled ? p.circuit : "disabled"}`, p.enabled ? t(`circuit.${p.circuit}`) : t("common.disabled")),
              h("a", { href: `#/providers/${p.id}` }, p.name),
            ),
          ),
        ),
  );
  return h(
    "section.overview",
    h("h1", t("nav.overview")),
    tabs,
    h(
      "div.cards",
      card(t("overview.requests"), count(o.totals.requests)),
      card(t("overview.spend"), money(o.totals.cost_usd)),
      card(t("overview.errors"), count(o.totals.errors)),
      card(t("overview.blocked"), count(o.totals.blocked)),
      card(t("overview.tokens"), `${count(o.totals.input_tokens)} / ${count(o.totals.output_tokens)}`, t("overview.tokens_in_out")),
      h("a.card.link", { href: "#/sessions" }, h("div.card-label", t("overview.active_sessions")), h("div.card-value", count(o.active_sessions))),
    ),
    h("div.grid2", traffic, spend, topUsers, topModels, codes, health),
    h("p.muted", t("overview.range", { from: time(o.from), to: time(o.to) })),
  );
}
