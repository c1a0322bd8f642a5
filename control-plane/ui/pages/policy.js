// Policy: sensitive words with a "test this text" box, request filters in
// the order they run, and the guard settings with the GA client versions
// the version check compares against (admin only).
import { act, api } from "../lib/api.js";
import { h, table } from "../lib/dom.js";
import { t } from "../lib/i18n.js";
import { time } from "../lib/format.js";
import { form, formDialog } from "../lib/form.js";

const MATCH_TYPES = ["contains", "exact", "regex"];

function matchOptions() {
  return MATCH_TYPES.map((m) => ({ value: m, label: t(`match.${m}`) }));
}

function wordsSection(ctx, words) {
  const add = form({
    fields: [
      { name: "word", label: "policy.word", required: true },
      { name: "match_type", label: "policy.match_type", type: "select", options: matchOptions() },
      { name: "description", label: "common.description" },
    ],
    initial: { match_type: "contains" },
    submitLabel: t("policy.add_word"),
    onSubmit: async (values) => {
      const r = await api("POST", "/api/v1/sensitive-words", { ...values, enabled: true });
      if (r.ok) ctx.refresh();
      return r;
    },
  });
  add.el.id = "add-word";
  const text = h("textarea#test-text", { rows: 3, "aria-label": t("policy.test_text") });
  const verdict = h("p#test-verdict", { role: "status" });
  const test = h(
    "form.test-box#test-word",
    {
      onsubmit: async (e) => {
        e.preventDefault();
        const r = await api("POST", "/api/v1/sensitive-words/test", { text: text.value });
        if (!r.ok) {
          verdict.className = "form-error";
          verdict.textContent = r.error.message;
        } else if (r.data.blocked) {
          verdict.className = "blocked";
          verdict.textContent = t("policy.would_block", { word: r.data.word, match_type: t(`match.${r.data.match_type}`), matched: r.data.matched_text ?? "" });
        } else {
          verdict.className = "passes";
          verdict.textContent = t("policy.would_pass");
        }
      },
    },
    h("label", { for: "test-text" }, t("policy.test_text")),
    text,
    h("div.buttons", h("button.primary", { type: "submit" }, t("policy.test"))),
    verdict,
  );
  return h(
    "section#words",
    h("h2", t("policy.words")),
    h("div.split", add.el, test),
    table(
      [
        { label: t("policy.word"), cell: (w) => h("code", w.word) },
        { label: t("policy.match_type"), cell: (w) => t(`match.${w.match_type}`) },
        { label: t("common.description"), cell: (w) => w.description },
        { label: t("common.status"), cell: (w) => h(`span.badge.${w.enabled ? "on" : "off"}`, w.enabled ? t("common.enabled") : t("common.disabled")) },
        {
          label: "",
          cell: (w) =>
            h(
              "div.row-actions",
              h("button", { type: "button", onclick: () => act("PATCH", `/api/v1/sensitive-words/${w.id}`, { enabled: !w.enabled }, ctx.refresh) }, w.enabled ? t("common.disable") : t("common.enable")),
              h("button.danger", { type: "button", onclick: () => confirm(t("policy.delete_word", { word: w.word })) && act("DELETE", `/api/v1/sensitive-words/${w.id}`, undefined, ctx.refresh) }, t("common.delete")),
            ),
        },
      ],
      words,
      { empty: t("policy.no_words") },
    ),
  );
}

function filterFields() {
  const opts = (values, prefix) => values.map((v) => ({ value: v, label: t(`${prefix}.${v}`) }));
  return [
    { name: "name", label: "policy.filter_name", required: true },
    { name: "description", label: "common.description" },
    { name: "scope", label: "policy.scope", type: "select", options: opts(["header", "body"], "scope") },
    { name: "action", label: "policy.action", type: "select", options: opts(["remove", "set", "json_path", "text_replace"], "action") },
    { name: "match_type", label: "policy.match_type", type: "select", nullable: true, options: [{ value: "", label: "—" }, ...matchOptions()], help: "policy.match_type_help" },
    { name: "target", label: "policy.target", required: true, help: "policy.target_help" },
    { name: "replacement", label: "policy.replacement", type: "json", help: "policy.replacement_help" },
    { name: "priority", label: "policy.priority", type: "int" },
    { name: "enabled", label: "common.enabled", type: "bool" },
    { name: "binding", label: "policy.binding", type: "select", options: opts(["global", "providers", "groups"], "binding") },
    {
      name: "provider_ids",
      label: "policy.provider_ids",
      type: "custom",
      render: (value, id) => {
        const input = h("input", { id, type: "text", value: (value || []).join(", "), placeholder: "1, 2" });
        return { el: input, get: () => input.value.split(",").map((s) => s.trim()).filter(Boolean).map((s) => (/^\d+$/.test(s) ? Number(s) : s)) };
      },
    },
    { name: "group_tags", label: "providers.groups", type: "list" },
  ];
}

function filterDialog(ctx, filter) {
  formDialog({
    title: filter ? t("policy.edit_filter", { name: filter.name }) : t("policy.new_filter"),
    fields: filterFields(),
    initial: filter || { scope: "header", action: "set", priority: 0, enabled: true, binding: "global" },
    submitLabel: filter ? t("form.save") : t("form.create"),
    send: (values) => (filter ? api("PATCH", `/api/v1/request-filters/${filter.id}`, values) : api("POST", "/api/v1/request-filters", values)),
    done: ctx.refresh,
  });
}

function filtersSection(ctx, filters) {
  const ordered = [...filters].sort((a, b) => a.priority - b.priority || a.id - b.id);
  return h(
    "section#filters",
    h("div.page-head", h("h2", t("policy.filters")), h("button.primary#new-filter", { type: "button", onclick: () => filterDialog(ctx, null) }, t("policy.new_filter"))),
    h("p.muted", t("policy.filters_order")),
    table(
      [
        { label: t("policy.priority"), cell: (f) => String(f.priority), className: "num" },
        { label: t("policy.filter_name"), cell: (f) => f.name },
        { label: t("policy.scope"), cell: (f) => t(`scope.${f.scope}`) },
        { label: t("policy.action"), cell: (f) => t(`action.${f.action}`) },
        { label: t("policy.target"), cell: (f) => h("code", f.target) },
        { label: t("policy.replacement"), cell: (f) => (f.replacement === null ? "—" : h("code", JSON.stringify(f.replacement))) },
        { label: t("policy.binding"), cell: (f) => t(`binding.${f.binding}`) },
        { label: t("common.status"), cell: (f) => h(`span.badge.${f.enabled ? "on" : "off"}`, f.enabled ? t("common.enabled") : t("common.disabled")) },
        {
          label: "",
          cell: (f) =>
            h(
              "div.row-actions",
              h("button", { type: "button", onclick: () => filterDialog(ctx, f) }, t("common.edit")),
              h("button.danger", { type: "button", onclick: () => confirm(t("policy.delete_filter", { name: f.name })) && act("DELETE", `/api/v1/request-filters/${f.id}`, undefined, ctx.refresh) }, t("common.delete")),
            ),
        },
      ],
      ordered,
      { empty: t("policy.no_filters") },
    ),
  );
}

function settingsSection(ctx, settings, versions) {
  const f = form({
    fields: [
      { name: "intercept_anthropic_warmup_requests", label: "settings.warmup", type: "bool", help: "settings.warmup_help" },
      { name: "enable_client_version_check", label: "settings.version_check", type: "bool", help: "settings.version_check_help" },
      { name: "ga_threshold", label: "settings.ga_threshold", type: "int" },
      { name: "timezone", label: "settings.timezone" },
      { name: "locale", label: "settings.locale", type: "select", options: [{ value: "en", label: "English" }, { value: "zh-CN", label: "简体中文" }] },
      { name: "unknown_path", label: "settings.unknown_path", type: "select", options: ["passthrough", "not_found"].map((v) => ({ value: v, label: t(`settings.unknown_${v}`) })) },
      { name: "audit_retention_days", label: "settings.retention", type: "int" },
      { name: "max_provider_attempts", label: "settings.attempts", type: "int" },
    ],
    initial: settings,
    onSubmit: async (values) => {
      const r = await api("PATCH", "/api/v1/settings", values);
      if (r.ok) ctx.refresh();
      return r;
    },
  });
  f.el.id = "settings-form";
  return h(
    "section#settings",
    h("h2", t("settings.title")),
    f.el,
    h("h3", t("settings.ga_versions")),
    table(
      [
        { label: t("settings.client_type"), cell: (v) => v.client_type },
        { label: t("settings.version"), cell: (v) => h("code", v.version) },
        { label: t("settings.users"), cell: (v) => String(v.users), className: "num" },
        { label: t("settings.computed_at"), cell: (v) => time(v.computed_at) },
      ],
      versions,
      { empty: t("settings.no_versions") },
    ),
  );
}

export async function render(ctx) {
  const [words, filters, settings, versions] = await Promise.all([
    api("GET", "/api/v1/sensitive-words"),
    api("GET", "/api/v1/request-filters"),
    api("GET", "/api/v1/settings"),
    api("GET", "/api/v1/client-versions"),
  ]);
  const failed = [words, filters, settings, versions].find((r) => !r.ok);
  if (failed) return h("p.form-error", failed.error.message);
  return h(
    "section.policy",
    h("h1", t("nav.policy")),
    wordsSection(ctx, words.data),
    filtersSection(ctx, filters.data),
    settingsSection(ctx, settings.data, versions.data),
  );
}
