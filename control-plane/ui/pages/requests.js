// The request log: filters kept in the address (so a view can be shared and
// exported as CSV), one page of rows at a time, and a detail view. A user
// sees only their own requests (the API scopes them).
import { api, query } from "../lib/api.js";
import { dialog, h, pager, table } from "../lib/dom.js";
import { t } from "../lib/i18n.js";
import { count, fromLocalInput, money, ms, time, toLocalInput } from "../lib/format.js";

const PAGE_SIZE = 50;
const FILTERS = ["user_id", "key_id", "model", "status", "blocked_by", "from", "to"];
const COMMON_CODES = [
  "sensitive_word", "warmup", "client_not_allowed", "client_blocked", "client_upgrade_required", "model_not_allowed",
  "rpm_exceeded", "concurrent_sessions_exceeded", "daily_quota_exceeded", "no_provider_available", "invalid_api_key",
];

function filtersFrom(params) {
  const out = {};
  for (const name of FILTERS) if (params.get(name)) out[name] = params.get(name);
  return out;
}

function statusBadge(r) {
  const kind = r.blocked_by ? "blocked" : r.status >= 400 ? "error" : "ok";
  return h(`span.badge.status-${kind}`, String(r.status));
}

function model(r) {
  if (!r.original_model) return "—";
  return r.upstream_model && r.upstream_model !== r.original_model ? `${r.original_model} → ${r.upstream_model}` : r.original_model;
}

function filterForm(ctx, filters, users) {
  const field = (name, control) => h("div.field", h("label", { for: `q-${name}` }, t(`requests.${name}`)), control);
  const input = (name, attrs = {}) => h("input", { id: `q-${name}`, name, type: "text", value: filters[name] || "", ...attrs });
  const admin = ctx.session.role === "admin";
  const userControl = admin
    ? h("select", { id: "q-user_id", name: "user_id" }, h("option", { value: "" }, t("common.all")), users.map((u) => h("option", { value: String(u.id), selected: String(u.id) === filters.user_id }, u.name)))
    : null;
  const el = h(
    "form.filters#request-filters",
    {
      onsubmit: (e) => {
        e.preventDefault();
        const data = new FormData(e.target);
        const next = {};
        for (const name of FILTERS) {
          const v = String(data.get(name) || "").trim();
          if (v) next[name] = name === "from" || name === "to" ? fromLocalInput(v) : v;
        }
        ctx.go(`${ctx.page}${query(next)}`);
      },
    },
    admin ? field("user_id", userControl) : null,
    field("key_id", input("key_id", { inputMode: "numeric" })),
    field("model", input("model")),
    field("status", input("status", { inputMode: "numeric" })),
    field("blocked_by", input("blocked_by", { list: "blocked-codes" })),
    h("datalist#blocked-codes", COMMON_CODES.map((c) => h("option", { value: c }))),
    field("from", h("input", { id: "q-from", name: "from", type: "datetime-local", value: toLocalInput(filters.from) })),
    field("to", h("input", { id: "q-to", name: "to", type: "datetime-local", value: toLocalInput(filters.to) })),
    h("div.buttons", h("button.primary", { type: "submit" }, t("requests.apply")), h("a.button", { href: `#/${ctx.page}` }, t("requests.clear"))),
  );
  return el;
}

function breakdown(r) {
  const b = r.cost_breakdown;
  if (!b) return null;
  const rows = [
    ["input_usd", r.input_tokens],
    ["output_usd", r.output_tokens],
    ["cache_creation_5m_usd", r.cache_creation_5m_tokens],
    ["cache_creation_1h_usd", r.cache_creation_1h_tokens],
    ["cache_read_usd", r.cache_read_tokens],
  ];
  return table(
    [
      { label: t("requests.cost_part"), cell: ([k]) => t(`requests.${k}`) },
      { label: t("requests.tokens"), cell: ([, n]) => count(n), className: "num" },
      { label: t("requests.cost"), cell: ([k]) => money(b[k], { precise: true }), className: "num" },
    ],
    rows,
  );
}

async function showDetail(id, userNames, providerNames) {
  const result = await api("GET", `/api/v1/requests/${id}`);
  if (!result.ok) {
    alert(result.error.message);
    return;
  }
  const r = result.data;
  const item = (label, value) => [h("dt", label), h("dd", value)];
  const d = dialog(
    t("requests.detail", { id: r.request_id }),
    h(
      "dl.summary.detail#request-detail",
      item(t("requests.time"), time(r.started_at)),
      item(t("requests.user_id"), userNames.get(r.user_id) || (r.user_id ?? "—")),
      item(t("requests.key"), r.key_masked ? h("code", r.key_masked) : "—"),
      item(t("requests.endpoint"), `${r.method} ${r.endpoint}${r.stream ? " (SSE)" : ""}`),
      item(t("requests.model"), model(r)),
      item(t("requests.provider"), providerNames.get(r.provider_id) || (r.provider_id ?? "—")),
      item(t("requests.status"), statusBadge(r)),
      item(t("requests.blocked_by"), r.blocked_by || "—"),
      item(t("requests.blocked_reason"), r.blocked_reason ? h("pre.mono#blocked-reason", JSON.stringify(r.blocked_reason, null, 2)) : "—"),
      item(t("requests.error"), r.error || "—"),
      item(t("requests.tokens"), t("requests.tokens_detail", {
        input: count(r.input_tokens), output: count(r.output_tokens), cache_read: count(r.cache_read_tokens),
        cache_write: count(r.cache_creation_5m_tokens + r.cache_creation_1h_tokens),
      })),
      item(t("requests.cost"), h("span#detail-cost", money(r.cost_usd, { precise: true }), r.cost_multiplier !== "1" ? ` (× ${r.cost_multiplier})` : "")),
      item(t("requests.ttfb"), ms(r.ttfb_ms)),
      item(t("requests.duration"), ms(r.duration_ms)),
      item(t("requests.session"), r.session_id || "—"),
      item(t("requests.client"), r.user_agent || "—"),
      item(t("requests.flags"), r.flags.length ? r.flags.join(", ") : "—"),
    ),
    breakdown(r),
    h("div.buttons", h("button", { type: "button", onclick: () => d.close() }, t("common.close"))),
  );
}

export async function render(ctx) {
  const filters = filtersFrom(ctx.params);
  const page = Math.max(Number(ctx.params.get("page")) || 1, 1);
  const admin = ctx.session.role === "admin";
  const none = Promise.resolve({ ok: true, data: [] });
  const [result, usersResult, providersResult] = await Promise.all([
    api("GET", `/api/v1/requests${query({ ...filters, page, page_size: PAGE_SIZE })}`),
    admin ? api("GET", "/api/v1/users") : none,
    admin ? api("GET", "/api/v1/providers") : none,
  ]);
  const users = usersResult.ok ? usersResult.data : [];
  const userNames = new Map(users.map((u) => [u.id, u.name]));
  const providerNames = new Map((providersResult.ok ? providersResult.data : []).map((p) => [p.id, p.name]));
  const head = h(
    "div.page-head",
    h("h1", t("nav.requests")),
    h("a.button#export-csv", { href: `/api/v1/requests/export.csv${query(filters)}`, download: "hubgate-requests.csv" }, t("requests.export")),
  );
  if (!result.ok) return h("section", head, filterForm(ctx, filters, users), h("p.form-error", { role: "alert" }, result.error.message));
  const { items, total, total_capped: capped } = result.data;
  return h(
    "section.requests",
    head,
    filterForm(ctx, filters, users),
    table(
      [
        { label: t("requests.time"), cell: (r) => time(r.started_at) },
        ...(admin ? [{ label: t("requests.user_id"), cell: (r) => userNames.get(r.user_id) || (r.user_id ?? "—") }] : []),
        { label: t("requests.model"), cell: model },
        { label: t("requests.status"), cell: statusBadge },
        { label: t("requests.blocked_by"), cell: (r) => r.blocked_by || "" },
        { label: t("requests.tokens"), cell: (r) => `${count(r.input_tokens)} / ${count(r.output_tokens)}`, className: "num" },
        { label: t("requests.cost"), cell: (r) => money(r.cost_usd, { precise: true }), className: "num cost" },
        { label: t("requests.duration"), cell: (r) => ms(r.duration_ms), className: "num" },
      ],
      items,
      { empty: t("requests.none"), onRow: (r) => showDetail(r.id, userNames, providerNames) },
    ),
    pager(ctx, { page, size: PAGE_SIZE, total, capped, shown: items.length, params: filters }),
  );
}
