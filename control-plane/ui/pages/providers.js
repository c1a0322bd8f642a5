// Providers: routing settings, the write-only credential, model redirects,
// circuit state with its reset (admin only).
import { act, api } from "../lib/api.js";
import { h, table } from "../lib/dom.js";
import { t } from "../lib/i18n.js";
import { count, money, time } from "../lib/format.js";
import { formDialog } from "../lib/form.js";

const TYPES = ["claude", "codex", "openai-compatible", "gemini"];
const REDIRECT_MATCHES = ["exact", "prefix", "suffix", "contains", "regex"];

/** Rows of {match_type, pattern, target}, added and removed in place. */
function redirectsEditor(value, id) {
  const body = h("tbody");
  const addRow = (r = { match_type: "exact", pattern: "", target: "" }) => {
    const tr = h(
      "tr",
      h("td", h("select", { "aria-label": t("providers.redirect_match") }, REDIRECT_MATCHES.map((m) => h("option", { value: m, selected: m === r.match_type }, t(`match.${m}`))))),
      h("td", h("input", { type: "text", value: r.pattern, "aria-label": t("providers.redirect_pattern") })),
      h("td", h("input", { type: "text", value: r.target, "aria-label": t("providers.redirect_target") })),
      h("td", h("button", { type: "button", onclick: () => tr.remove(), "aria-label": t("common.remove") }, "×")),
    );
    body.append(tr);
  };
  (value || []).forEach(addRow);
  const el = h(
    "div.redirects",
    { id },
    h("table.compact", h("thead", h("tr", h("th", t("providers.redirect_match")), h("th", t("providers.redirect_pattern")), h("th", t("providers.redirect_target")), h("th", ""))), body),
    h("button", { type: "button", onclick: () => addRow() }, t("providers.add_redirect")),
  );
  return {
    el,
    get: () =>
      [...body.rows].map((tr) => {
        const [m, p, target] = tr.querySelectorAll("select,input");
        return { match_type: m.value, pattern: p.value, target: target.value };
      }),
  };
}

function fields(creating) {
  return [
    { name: "name", label: "providers.name", required: true },
    { name: "type", label: "providers.type", type: "select", options: TYPES.map((v) => ({ value: v, label: v })) },
    { name: "base_url", label: "providers.base_url", required: true, placeholder: "https://api.anthropic.com" },
    { name: "api_key", label: "providers.api_key", secret: true, required: creating, skipEmpty: !creating, help: creating ? "providers.api_key_help" : "providers.api_key_keep" },
    { name: "enabled", label: "common.enabled", type: "bool" },
    { name: "priority", label: "providers.priority", type: "int", help: "providers.priority_help" },
    { name: "weight", label: "providers.weight", type: "int" },
    { name: "cost_multiplier", label: "providers.cost_multiplier", type: "decimal" },
    { name: "group_tags", label: "providers.groups", type: "list" },
    { name: "allowed_models", label: "users.allowed_models", type: "list", help: "users.models_help" },
    { name: "model_redirects", label: "providers.redirects", type: "custom", render: redirectsEditor },
    { name: "circuit_failure_threshold", label: "providers.circuit_failure_threshold", type: "int" },
    { name: "circuit_open_seconds", label: "providers.circuit_open_seconds", type: "int" },
    { name: "circuit_half_open_successes", label: "providers.circuit_half_open_successes", type: "int" },
    { name: "first_byte_timeout_ms", label: "providers.first_byte_timeout_ms", type: "int", nullable: true },
    { name: "idle_timeout_ms", label: "providers.idle_timeout_ms", type: "int", nullable: true },
    { name: "limit_daily_usd", label: "limits.limit_daily_usd", type: "decimal", nullable: true },
    { name: "limit_monthly_usd", label: "limits.limit_monthly_usd", type: "decimal", nullable: true },
    { name: "limit_concurrent_sessions", label: "limits.limit_concurrent_sessions", type: "int", nullable: true },
  ];
}

function editDialog(ctx, provider) {
  const creating = !provider;
  formDialog({
    title: creating ? t("providers.new") : t("providers.edit", { name: provider.name }),
    fields: fields(creating),
    initial: provider || { type: "claude", enabled: true, priority: 0, weight: 1, cost_multiplier: "1", circuit_failure_threshold: 5, circuit_open_seconds: 1800, circuit_half_open_successes: 2 },
    submitLabel: creating ? t("form.create") : t("form.save"),
    send: (values) => (creating ? api("POST", "/api/v1/providers", values) : api("PATCH", `/api/v1/providers/${provider.id}`, values)),
    done: (saved) => {
      ctx.go(`providers/${saved.id}`);
      ctx.refresh();
    },
  });
}

function circuitBadge(circuit, enabled) {
  if (!enabled) return h("span.badge.circuit-disabled", t("common.disabled"));
  const state = circuit && circuit.state ? circuit.state : "closed";
  return h(`span.badge.circuit-${state}`, t(`circuit.${state}`));
}

function detail(ctx, p, circuit) {
  const item = (label, value) => [h("dt", label), h("dd", value)];
  return h(
    "section.provider-detail#provider-detail",
    h("div.page-head", h("h2", p.name), h("div.row-actions",
      h("button#edit-provider", { type: "button", onclick: () => editDialog(ctx, p) }, t("common.edit")),
      h("button#reset-circuit", { type: "button", onclick: () => act("POST", `/api/v1/providers/${p.id}/circuit/reset`, undefined, ctx.refresh) }, t("providers.reset_circuit")),
    )),
    h(
      "dl.summary",
      item(t("providers.type"), p.type),
      item(t("providers.base_url"), p.base_url),
      item(t("providers.api_key"), h("code", p.api_key_masked)),
      item(t("providers.groups"), p.group_tags.join(", ") || "default"),
      item(t("users.allowed_models"), p.allowed_models.join(", ") || t("common.any")),
      item(t("providers.redirects"), p.model_redirects.length ? p.model_redirects.map((r) => `${t(`match.${r.match_type}`)} ${r.pattern} → ${r.target}`).join("; ") : t("common.none")),
      item(t("providers.cost_multiplier"), `× ${p.cost_multiplier}`),
      item(t("providers.timeouts"), `${p.first_byte_timeout_ms ?? "—"} / ${p.idle_timeout_ms ?? "—"} ms`),
      item(t("providers.circuit"), circuitBadge(circuit, p.enabled)),
      item(t("limits.limit_daily_usd"), money(p.limit_daily_usd)),
    ),
    circuit && circuit.instances.length
      ? table(
          [
            { label: t("providers.instance"), cell: (i) => i.instance },
            { label: t("providers.circuit"), cell: (i) => h(`span.badge.circuit-${i.state}`, t(`circuit.${i.state}`)) },
            { label: t("providers.failures"), cell: (i) => count(i.failures), className: "num" },
            { label: t("providers.open_until"), cell: (i) => time(i.open_until) },
            { label: t("providers.reported_at"), cell: (i) => `${time(i.reported_at)}${i.stale ? ` (${t("providers.stale")})` : ""}` },
          ],
          circuit.instances,
        )
      : h("p.muted", t("providers.no_reports")),
  );
}

export async function render(ctx) {
  const result = await api("GET", "/api/v1/providers");
  if (!result.ok) return h("p.form-error", result.error.message);
  const providers = result.data;
  const circuits = await Promise.all(providers.map((p) => api("GET", `/api/v1/providers/${p.id}/circuit`)));
  const circuitOf = (p) => {
    const r = circuits[providers.indexOf(p)];
    return r && r.ok ? r.data : null;
  };
  const selected = providers.find((p) => String(p.id) === ctx.rest[0]);
  const toggle = (p) => act("PATCH", `/api/v1/providers/${p.id}`, { enabled: !p.enabled }, ctx.refresh);
  const remove = (p) => confirm(t("providers.delete_confirm", { name: p.name })) && act("DELETE", `/api/v1/providers/${p.id}`, undefined, () => ctx.go("providers"));
  return h(
    "section",
    h("div.page-head", h("h1", t("nav.providers")), h("button.primary#new-provider", { type: "button", onclick: () => editDialog(ctx, null) }, t("providers.new"))),
    table(
      [
        { label: t("providers.name"), cell: (p) => h("a", { href: `#/providers/${p.id}` }, p.name) },
        { label: t("providers.type"), cell: (p) => p.type },
        { label: t("providers.priority"), cell: (p) => String(p.priority), className: "num" },
        { label: t("providers.weight"), cell: (p) => String(p.weight), className: "num" },
        { label: t("providers.groups"), cell: (p) => p.group_tags.join(", ") || "default" },
        { label: t("providers.circuit"), cell: (p) => circuitBadge(circuitOf(p), p.enabled) },
        {
          label: "",
          cell: (p) =>
            h(
              "div.row-actions",
              h("button", { type: "button", onclick: (e) => { e.stopPropagation(); toggle(p); } }, p.enabled ? t("common.disable") : t("common.enable")),
              h("button.danger", { type: "button", onclick: (e) => { e.stopPropagation(); remove(p); } }, t("common.delete")),
            ),
        },
      ],
      providers,
      { empty: t("providers.none"), onRow: (p) => ctx.go(`providers/${p.id}`) },
    ),
    selected ? detail(ctx, selected, circuitOf(selected)) : null,
  );
}
