import { t } from "./i18n.js";
import { count } from "./format.js";

// Element building without innerHTML: every text goes through textContent,
// so nothing the API returns is ever parsed as markup.

/** h("tag.class#id", {attr: value, onclick: fn}, ...children) */
export function h(spec, attrs, ...children) {
  const [, tag = "div", rest = ""] = /^([a-z0-9]*)(.*)$/i.exec(spec);
  const el = document.createElement(tag || "div");
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "style") {
      // CSSOM, not the attribute: the page's CSP refuses inline style attributes.
      Object.assign(el.style, value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name in el && typeof value !== "string") {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table: columns = [{label, cell: (row) => node|string, className}]. */
export function table(columns, rows, { empty = "", onRow } = {}) {
  const head = h("thead", h("tr", columns.map((c) => h("th", { scope: "col", class: c.className }, c.label))));
  const body = h(
    "tbody",
    rows.length === 0
      ? h("tr", h("td.empty", { colSpan: columns.length }, empty))
      : rows.map((row) => {
          const tr = h("tr", columns.map((c) => h("td", { class: c.className }, c.cell(row))));
          if (onRow) {
            tr.classList.add("clickable");
            tr.tabIndex = 0;
            tr.addEventListener("click", () => onRow(row));
            tr.addEventListener("keydown", (e) => {
              if (e.key === "Enter") onRow(row);
            });
          }
          return tr;
        }),
  );
  return h("div.table-wrap", h("table", head, body));
}

/** A modal dialog (native <dialog>, so Escape and focus trapping work). */
export function dialog(title, ...content) {
  const d = h("dialog.modal", h("h2", title), ...content);
  d.addEventListener("close", () => d.remove());
  document.body.append(d);
  d.showModal();
  return d;
}

/** Previous/next links for page `page` of a list of `total` items shown
 * `size` at a time, keeping `params`. A capped total (the API stops
 * counting, see `total_capped`) shows as "10,000+" and paging goes on while
 * pages come back full. */
export function pager(ctx, { page, size, total, capped = false, shown, params = {} }) {
  const link = (p) => {
    const q = new URLSearchParams(Object.entries({ ...params, page: p > 1 ? p : "" }).filter(([, v]) => v !== ""));
    const s = q.toString();
    return `#/${ctx.page}${s ? `?${s}` : ""}`;
  };
  const pages = Math.max(Math.ceil(total / size), 1);
  const more = capped ? shown === size : page < pages;
  const text = capped
    ? t("requests.page_of_many", { page: count(page), total: `${count(total)}+` })
    : t("requests.page_of", { page: count(page), pages: count(pages), total: count(total) });
  return h(
    "nav.pager",
    { "aria-label": t("requests.pages") },
    page > 1 ? h("a.button", { href: link(page - 1), rel: "prev" }, t("requests.prev")) : null,
    h("span", text),
    more ? h("a.button", { href: link(page + 1), rel: "next" }, t("requests.next")) : null,
  );
}
