// Active client sessions (a request within the last 300 s). A user sees only
// their own (the API scopes them).
import { api, query } from "../lib/api.js";
import { h, pager, table } from "../lib/dom.js";
import { t } from "../lib/i18n.js";
import { count, time } from "../lib/format.js";

const PAGE_SIZE = 100;

export async function render(ctx) {
  const admin = ctx.session.role === "admin";
  const page = Math.max(Number(ctx.params.get("page")) || 1, 1);
  const [result, users, providers] = await Promise.all([
    api("GET", `/api/v1/sessions${query({ active: "true", page, page_size: PAGE_SIZE })}`),
    admin ? api("GET", "/api/v1/users") : Promise.resolve({ ok: true, data: [] }),
    admin ? api("GET", "/api/v1/providers") : Promise.resolve({ ok: true, data: [] }),
  ]);
  if (!result.ok) return h("p.form-error", result.error.message);
  const userNames = new Map((users.ok ? users.data : []).map((u) => [u.id, u.name]));
  const providerNames = new Map((providers.ok ? providers.data : []).map((p) => [p.id, p.name]));
  const { items, total } = result.data;
  return h(
    "section.sessions",
    h("h1", t("nav.sessions")),
    h("p.muted", t("sessions.explain", { total: count(total) })),
    table(
      [
        { label: t("sessions.session"), cell: (s) => h("a", { href: `#/requests${query({ user_id: admin ? s.user_id : "", key_id: s.key_id })}` }, h("code", s.session_id)) },
        ...(admin ? [{ label: t("requests.user_id"), cell: (s) => userNames.get(s.user_id) || (s.user_id ?? "—") }] : []),
        { label: t("sessions.key"), cell: (s) => String(s.key_id) },
        { label: t("requests.client"), cell: (s) => s.client || "—" },
        { label: t("requests.provider"), cell: (s) => providerNames.get(s.provider_id) || (s.provider_id ?? "—") },
        { label: t("sessions.first_seen"), cell: (s) => time(s.first_seen_at) },
        { label: t("sessions.last_seen"), cell: (s) => time(s.last_seen_at) },
        { label: t("sessions.requests"), cell: (s) => count(s.request_count), className: "num" },
      ],
      items,
      { empty: t("sessions.none") },
    ),
    pager(ctx, { page, size: PAGE_SIZE, total, shown: items.length }),
  );
}
