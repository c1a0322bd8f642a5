// Users and keys (admin), and "My account" for a signed-in user: the same
// detail view with the admin-only controls left out (the API refuses them
// anyway).
import { act, api } from "../lib/api.js";
import { dialog, h, table } from "../lib/dom.js";
import { t } from "../lib/i18n.js";
import { count, money, time } from "../lib/format.js";
import { formDialog } from "../lib/form.js";

/** The client presets of SPEC §2.3, offered as choices. */
export const CLIENT_PRESETS = ["claude-cli", "codex-cli", "gemini-cli", "factory-cli"];

const LIMIT_FIELDS = [
  { name: "limit_total_usd", label: "limits.limit_total_usd", type: "decimal", nullable: true },
  { name: "limit_5h_usd", label: "limits.limit_5h_usd", type: "decimal", nullable: true },
  { name: "limit_5h_mode", label: "limits.limit_5h_mode", type: "select", options: modes(["rolling", "fixed"]) },
  { name: "limit_daily_usd", label: "limits.limit_daily_usd", type: "decimal", nullable: true },
  { name: "limit_weekly_usd", label: "limits.limit_weekly_usd", type: "decimal", nullable: true },
  { name: "limit_monthly_usd", label: "limits.limit_monthly_usd", type: "decimal", nullable: true },
  { name: "limit_concurrent_sessions", label: "limits.limit_concurrent_sessions", type: "int", nullable: true },
  { name: "provider_group", label: "limits.provider_group", type: "text", nullable: true, help: "limits.provider_group_help" },
];

function modes(values) {
  return values.map((v) => ({ value: v, get label() { return t(`mode.${v}`); } }));
}

function userFields() {
  return [
    { name: "name", label: "users.name", required: true },
    { name: "description", label: "common.description", type: "textarea", rows: 2 },
    { name: "role", label: "users.role", type: "select", options: [{ value: "user", label: t("role.user") }, { value: "admin", label: t("role.admin") }], default: "user" },
    { name: "enabled", label: "common.enabled", type: "bool" },
    { name: "expires_at", label: "common.expires_at", type: "datetime" },
    { name: "allowed_clients", label: "users.allowed_clients", type: "list", presets: CLIENT_PRESETS, help: "users.clients_help" },
    { name: "blocked_clients", label: "users.blocked_clients", type: "list", presets: CLIENT_PRESETS },
    { name: "allowed_models", label: "users.allowed_models", type: "list", help: "users.models_help" },
    { name: "rpm", label: "limits.rpm", type: "int", nullable: true },
    ...LIMIT_FIELDS.slice(0, 4),
    { name: "daily_reset_mode", label: "limits.daily_reset_mode", type: "select", options: modes(["fixed", "rolling"]) },
    { name: "daily_reset_time", label: "limits.daily_reset_time", placeholder: "00:00" },
    ...LIMIT_FIELDS.slice(4),
  ];
}

function keyFields() {
  return [
    { name: "name", label: "keys.name", required: true },
    { name: "enabled", label: "common.enabled", type: "bool" },
    { name: "expires_at", label: "common.expires_at", type: "datetime" },
    { name: "can_login_web_ui", label: "keys.can_login_web_ui", type: "bool" },
    ...LIMIT_FIELDS,
  ];
}

function enabledBadge(enabled) {
  return h(`span.badge.${enabled ? "on" : "off"}`, enabled ? t("common.enabled") : t("common.disabled"));
}

/** The raw key, shown once, with a copy button. */
function showRawKey(raw, title) {
  const code = h("code.raw-key#raw-key", raw);
  const copied = h("span.muted", { role: "status" });
  const copy = h("button.primary#copy-key", {
    type: "button",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(raw);
        copied.textContent = t("keys.copied");
      } catch {
        getSelection().selectAllChildren(code);
        copied.textContent = t("keys.copy_manually");
      }
    },
  }, t("keys.copy"));
  const d = dialog(
    title,
    h("p.warning", t("keys.shown_once")),
    code,
    h("div.buttons", copy, copied, h("button#close-key", { type: "button", onclick: () => d.close() }, t("common.close"))),
  );
  return d;
}

async function list(ctx) {
  const result = await api("GET", "/api/v1/users");
  if (!result.ok) return h("p.form-error", result.error.message);
  const create = h("button.primary#new-user", {
    type: "button",
    onclick: () =>
      formDialog({
        title: t("users.new"),
        fields: userFields(),
        initial: { enabled: true, role: "user", limit_5h_mode: "rolling", daily_reset_mode: "fixed", daily_reset_time: "00:00" },
        submitLabel: t("form.create"),
        send: (v) => api("POST", "/api/v1/users", v),
        done: (user) => ctx.go(`users/${user.id}`),
      }),
  }, t("users.new"));
  return h(
    "section",
    h("div.page-head", h("h1", t("nav.users")), create),
    table(
      [
        { label: t("users.name"), cell: (u) => h("a", { href: `#/users/${u.id}` }, u.name) },
        { label: t("users.role"), cell: (u) => t(`role.${u.role}`) },
        { label: t("common.status"), cell: (u) => enabledBadge(u.enabled) },
        { label: t("limits.limit_daily_usd"), cell: (u) => money(u.limit_daily_usd), className: "num" },
        { label: t("limits.rpm"), cell: (u) => (u.rpm === null ? "—" : count(u.rpm)), className: "num" },
        { label: t("users.allowed_clients"), cell: (u) => u.allowed_clients.join(", ") || t("common.any") },
        { label: t("common.expires_at"), cell: (u) => time(u.expires_at) },
      ],
      result.data,
      { empty: t("common.none"), onRow: (u) => ctx.go(`users/${u.id}`) },
    ),
  );
}

function usageTable(usage) {
  return h(
    "div",
    table(
      [
        { label: t("usage.window"), cell: (w) => t(`limits.${w.limit_type}`) },
        { label: t("usage.spent"), cell: (w) => money(w.spent_usd, { precise: true }), className: "num" },
        { label: t("usage.limit"), cell: (w) => (w.limit_usd === null ? t("form.no_limit") : money(w.limit_usd)), className: "num" },
        {
          label: t("usage.used"),
          cell: (w) => {
            if (w.limit_usd === null) return "";
            const share = Math.min(Number(w.spent_usd) / Math.max(Number(w.limit_usd), 1e-9), 1);
            return h("span.meter", { title: `${(share * 100).toFixed(1)}%` }, h(`span.meter-fill${share >= 0.9 ? ".hot" : ""}`, { style: { width: `${(share * 100).toFixed(1)}%` } }));
          },
        },
        { label: t("usage.resets"), cell: (w) => (w.reset_at ? time(w.reset_at) : w.rolling_hours ? t("usage.rolling", { hours: w.rolling_hours }) : "—") },
      ],
      usage.windows,
    ),
    h(
      "p.muted",
      t("usage.concurrent", { current: count(usage.concurrent_sessions.current), limit: usage.concurrent_sessions.limit ?? "∞" }),
      usage.rpm ? ` · ${t("usage.rpm", { current: count(usage.rpm.current), limit: usage.rpm.limit ?? "∞" })}` : "",
    ),
  );
}

function summary(user) {
  const item = (label, value) => [h("dt", label), h("dd", value)];
  return h(
    "dl.summary",
    item(t("users.role"), t(`role.${user.role}`)),
    item(t("common.status"), enabledBadge(user.enabled)),
    item(t("common.expires_at"), time(user.expires_at)),
    item(t("users.allowed_clients"), user.allowed_clients.join(", ") || t("common.any")),
    item(t("users.blocked_clients"), user.blocked_clients.join(", ") || t("common.none")),
    item(t("users.allowed_models"), user.allowed_models.join(", ") || t("common.any")),
    item(t("limits.provider_group"), user.provider_group || "default"),
  );
}

async function keysSection(ctx, user, admin) {
  const result = await api("GET", `/api/v1/users/${user.id}/keys`);
  if (!result.ok) return h("p.form-error", result.error.message);
  const rotate = async (key) => {
    if (!confirm(t("keys.rotate_confirm", { name: key.name }))) return;
    await act("POST", `/api/v1/keys/${key.id}/rotate`, undefined, (rotated) =>
      showRawKey(rotated.key, t("keys.rotated", { name: key.name })).addEventListener("close", ctx.refresh),
    );
  };
  const actions = (key) =>
    h(
      "div.row-actions",
      admin
        ? h("button", {
            type: "button",
            onclick: () =>
              formDialog({ title: t("keys.edit", { name: key.name }), fields: keyFields(), initial: key, send: (v) => api("PATCH", `/api/v1/keys/${key.id}`, v), done: ctx.refresh }),
          }, t("common.edit"))
        : null,
      h("button", { type: "button", dataset: { rotate: key.id }, onclick: () => rotate(key) }, t("keys.rotate")),
      admin
        ? h("button.danger", {
            type: "button",
            onclick: async () => {
              if (!confirm(t("keys.delete_confirm", { name: key.name }))) return;
              await act("DELETE", `/api/v1/keys/${key.id}`, undefined, ctx.refresh);
            },
          }, t("common.delete"))
        : null,
    );
  const create = admin
    ? h("button.primary#new-key", {
        type: "button",
        onclick: () =>
          formDialog({
            title: t("keys.new"),
            fields: keyFields(),
            initial: { enabled: true, limit_5h_mode: "rolling" },
            submitLabel: t("form.create"),
            send: (v) => api("POST", `/api/v1/users/${user.id}/keys`, v),
            done: (created) => showRawKey(created.key, t("keys.created", { name: created.name })).addEventListener("close", ctx.refresh),
          }),
      }, t("keys.new"))
    : null;
  const usages = await Promise.all(result.data.map((k) => api("GET", `/api/v1/usage/keys/${k.id}`)));
  const spentToday = (i) => {
    const u = usages[i];
    if (!u.ok) return "—";
    const daily = u.data.windows.find((w) => w.limit_type === "daily_quota");
    return daily ? money(daily.spent_usd, { precise: true }) : "—";
  };
  return h(
    "section#keys",
    h("div.page-head", h("h2", t("keys.title")), create),
    table(
      [
        { label: t("keys.name"), cell: (k) => k.name },
        { label: t("keys.key"), cell: (k) => h("code", k.key_masked) },
        { label: t("common.status"), cell: (k) => enabledBadge(k.enabled) },
        { label: t("keys.can_login_web_ui"), cell: (k) => (k.can_login_web_ui ? t("common.yes") : t("common.no")) },
        { label: t("keys.spent_today"), cell: (k) => spentToday(result.data.indexOf(k)), className: "num" },
        { label: t("common.expires_at"), cell: (k) => time(k.expires_at) },
        { label: "", cell: actions },
      ],
      result.data,
      { empty: t("keys.none") },
    ),
  );
}

async function detail(ctx, id, admin) {
  const [userResult, usageResult] = await Promise.all([api("GET", `/api/v1/users/${id}`), api("GET", `/api/v1/usage/users/${id}`)]);
  if (!userResult.ok) return h("p.form-error", userResult.error.message);
  const user = userResult.data;
  const head = h(
    "div.page-head",
    h("h1", admin ? user.name : t("nav.account")),
    admin
      ? h(
          "div.row-actions",
          h("button#edit-user", {
            type: "button",
            onclick: () =>
              formDialog({ title: t("users.edit", { name: user.name }), fields: userFields(), initial: user, send: (v) => api("PATCH", `/api/v1/users/${id}`, v), done: ctx.refresh }),
          }, t("common.edit")),
          h("button", {
            type: "button",
            onclick: async () => {
              await act("PATCH", `/api/v1/users/${id}`, { enabled: !user.enabled }, ctx.refresh);
            },
          }, user.enabled ? t("common.disable") : t("common.enable")),
          h("button.danger", {
            type: "button",
            onclick: async () => {
              if (!confirm(t("users.delete_confirm", { name: user.name }))) return;
              await act("DELETE", `/api/v1/users/${id}`, undefined, () => ctx.go("users"));
            },
          }, t("common.delete")),
        )
      : null,
  );
  const resetUsage = admin
    ? h("button", {
        type: "button",
        onclick: async () => {
          if (!confirm(t("usage.reset_confirm"))) return;
          await act("POST", `/api/v1/usage/users/${id}/reset`, undefined, ctx.refresh);
        },
      }, t("usage.reset"))
    : null;
  return h(
    "section.user-detail",
    admin ? h("p.crumbs", h("a", { href: "#/users" }, t("nav.users")), " / ", user.name) : null,
    head,
    !admin ? h("p", h("strong", user.name)) : null,
    user.description ? h("p.muted", user.description) : null,
    summary(user),
    h("section#usage", h("div.page-head", h("h2", t("usage.title")), resetUsage), usageResult.ok ? usageTable(usageResult.data) : h("p.form-error", usageResult.error.message)),
    await keysSection(ctx, user, admin),
    h("p", h("a", { href: `#/requests?user_id=${id}` }, t("users.see_requests"))),
  );
}

export async function render(ctx) {
  if (ctx.page === "account") return detail(ctx, ctx.session.user_id, false);
  if (ctx.rest[0]) return detail(ctx, ctx.rest[0], true);
  return list(ctx);
}
