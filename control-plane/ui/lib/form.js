// Forms built from field lists; the API's 422 answers are shown next to the
// field they name (`allowed_models[3]` belongs to `allowed_models`).
import { dialog, h } from "./dom.js";
import { t } from "./i18n.js";
import { fromLocalInput, toLocalInput } from "./format.js";

let serial = 0;

function splitList(text) {
  return text
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** One input for `field` showing `value`; returns {el, get}. */
function control(field, value, id) {
  switch (field.type) {
    case "bool": {
      const input = h("input", { id, type: "checkbox", name: field.name, checked: Boolean(value) });
      return { el: input, get: () => input.checked };
    }
    case "select": {
      const input = h(
        "select",
        { id, name: field.name },
        field.options.map((o) => h("option", { value: o.value, selected: o.value === (value ?? field.default) }, o.label)),
      );
      return { el: input, get: () => (input.value === "" && field.nullable ? null : input.value) };
    }
    case "int":
    case "decimal": {
      const input = h("input", {
        id, name: field.name, type: "text", inputMode: field.type === "int" ? "numeric" : "decimal",
        value: value ?? "", placeholder: field.placeholder || (field.nullable ? t("form.no_limit") : ""),
      });
      return {
        el: input,
        get: () => {
          const v = input.value.trim();
          if (v === "") return field.nullable ? null : field.type === "int" ? 0 : "0";
          return field.type === "int" && /^-?\d+$/.test(v) ? Number(v) : v;
        },
      };
    }
    case "datetime": {
      const input = h("input", { id, name: field.name, type: "datetime-local", value: toLocalInput(value) });
      return { el: input, get: () => fromLocalInput(input.value) };
    }
    case "list": {
      const values = Array.isArray(value) ? value : [];
      const presets = field.presets || [];
      const boxes = presets.map((p) => h("input", { type: "checkbox", value: p, checked: values.includes(p), "aria-label": p }));
      const rest = values.filter((v) => !presets.includes(v));
      const input = h("textarea", { id, name: field.name, rows: 2, placeholder: t("form.list_hint") }, rest.join("\n"));
      const el = h(
        "div.list-input",
        presets.length ? h("div.presets", boxes.map((b) => h("label.preset", b, b.value))) : null,
        input,
      );
      return { el, get: () => [...boxes.filter((b) => b.checked).map((b) => b.value), ...splitList(input.value)] };
    }
    case "textarea": {
      const input = h("textarea", { id, name: field.name, rows: field.rows || 3 }, value ?? "");
      return { el: input, get: () => input.value };
    }
    case "json": {
      const input = h("textarea", { id, name: field.name, rows: field.rows || 3, class: "mono" }, value === undefined || value === null ? "" : JSON.stringify(value));
      return {
        el: input,
        get: () => {
          const v = input.value.trim();
          if (v === "") return null;
          try {
            return JSON.parse(v);
          } catch {
            return v;
          }
        },
      };
    }
    case "custom":
      return field.render(value, id);
    default: {
      const input = h("input", {
        id, name: field.name, type: field.secret ? "password" : "text", value: field.secret ? "" : value ?? "",
        autocomplete: "off", placeholder: field.placeholder || "", required: Boolean(field.required),
      });
      return { el: input, get: () => (field.nullable && input.value === "" ? null : input.value) };
    }
  }
}

/**
 * A form for `fields` filled from `initial`. `onSubmit(values)` resolves to
 * an API result; a 422 is shown at its field, anything else above the
 * buttons. Fields with `skipEmpty` (write-only secrets) are left out when
 * empty; `when(values)` hides a field whose condition is false.
 */
export function form({ fields, initial = {}, submitLabel, onSubmit, onCancel }) {
  const controls = new Map();
  const errors = new Map();
  const rows = fields.map((field) => {
    serial += 1;
    const id = `f${serial}-${field.name}`;
    const c = control(field, initial[field.name], id);
    controls.set(field.name, c);
    const err = h("p.field-error", { role: "alert", id: `${id}-error` });
    errors.set(field.name, err);
    return h(
      `div.field.field-${field.type || "text"}`,
      { dataset: { field: field.name } },
      h("label", { for: id }, t(field.label), field.required ? " *" : ""),
      c.el,
      field.help ? h("small.help", t(field.help)) : null,
      err,
    );
  });
  const general = h("p.form-error", { role: "alert" });
  const submit = h("button.primary", { type: "submit" }, submitLabel || t("form.save"));
  const el = h(
    "form.form",
    { novalidate: true },
    h("div.fields", rows),
    general,
    h("div.buttons", submit, onCancel ? h("button", { type: "button", onclick: onCancel }, t("form.cancel")) : null),
  );

  function values() {
    const out = {};
    for (const field of fields) {
      const v = controls.get(field.name).get();
      if (field.skipEmpty && (v === "" || v === null)) continue;
      if (field.readOnly) continue;
      out[field.name] = v;
    }
    return out;
  }

  function clearErrors() {
    general.textContent = "";
    for (const [, e] of errors) e.textContent = "";
    el.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
  }

  function showError(error) {
    const base = error.field ? error.field.split(/[[.]/)[0] : "";
    const at = errors.get(base);
    if (at) {
      at.textContent = error.message;
      const input = controls.get(base).el;
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", at.id);
      (input.querySelector?.("input,textarea,select") || input).focus();
    } else {
      general.textContent = error.field ? `${error.field}: ${error.message}` : error.message;
    }
  }

  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    submit.disabled = true;
    try {
      const result = await onSubmit(values());
      if (result && !result.ok && result.error) showError(result.error);
    } finally {
      submit.disabled = false;
    }
  });
  return { el, values, showError };
}

/** `form` in a modal dialog: `send(values)` resolves to an API result; on
 * success the dialog closes and `done(data)` runs. */
export function formDialog({ title, fields, initial, submitLabel, send, done }) {
  let d;
  const f = form({
    fields,
    initial,
    submitLabel,
    onSubmit: async (values) => {
      const result = await send(values);
      if (result.ok) {
        d.close();
        done(result.data);
      }
      return result;
    },
    onCancel: () => d.close(),
  });
  d = dialog(title, f.el);
  return d;
}
