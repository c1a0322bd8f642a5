// The console's shell: sign-in, navigation, language, and the page router
// (hash routes, so the control plane serves one document).
import { api, setCsrfToken, whenSignedOut } from "./lib/api.js";
import { fill, h } from "./lib/dom.js";
import { lang, setLang, t } from "./lib/i18n.js";
import { setTimeZone } from "./lib/format.js";
import * as overview from "./pages/overview.js";
import * as users from "./pages/users.js";
import * as providers from "./pages/providers.js";
import * as policy from "./pages/policy.js";
import * as requests from "./pages/requests.js";
import * as sessions from "./pages/sessions.js";

const $ = (id) => document.getElementById(id);
let session = null;

const ADMIN_PAGES = [
  ["overview", overview],
  ["users", users],
  ["providers", providers],
  ["policy", policy],
  ["requests", requests],
  ["sessions", sessions],
];
const USER_PAGES = [
  ["account", users],
  ["requests", requests],
  ["sessions", sessions],
];

function pages() {
  return session && session.role === "admin" ? ADMIN_PAGES : USER_PAGES;
}

/** "#/users/12?x=1" -> {name: "users", rest: ["12"], params} */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, q = ""] = raw.split("?");
  const [name = "", ...rest] = path.split("/").filter(Boolean);
  return { name, rest, params: new URLSearchParams(q) };
}

export function go(path) {
  location.hash = `#/${path}`;
}

function renderChrome() {
  document.documentElement.lang = lang() === "zh" ? "zh-CN" : "en";
  document.title = t("app.title");
  $("lang").textContent = lang() === "zh" ? "English" : "中文";
  $("sign-in-title").textContent = t("app.title");
  $("token-label").textContent = t("signin.token");
  $("sign-in").textContent = t("signin.submit");
  $("sign-out").textContent = t("signin.sign_out");
  $("sign-out").hidden = !session;
  $("signed-out").hidden = Boolean(session);
  $("who").textContent = !session ? "" : session.role === "admin" && session.user_id === null ? t("who.admin_token") : t(`who.${session.role}`, { id: session.user_id });
  const current = parseHash().name;
  fill(
    $("nav"),
    session
      ? pages().map(([name]) =>
          h("a", { href: `#/${name}`, "aria-current": name === current ? "page" : false, dataset: { page: name } }, t(`nav.${name}`)),
        )
      : [],
  );
}

async function route() {
  renderChrome();
  const page = $("page");
  if (!session) {
    fill(page);
    $("token").focus();
    return;
  }
  delete document.body.dataset.rendered;
  const { name, rest, params } = parseHash();
  const found = pages().find(([n]) => n === name);
  if (!found) {
    go(pages()[0][0]);
    return;
  }
  const [pageName, module] = found;
  fill(page, h("p.loading", t("common.loading")));
  const ctx = { session, rest, params, page: pageName, go, refresh: route };
  try {
    const content = await module.render(ctx);
    // A newer navigation may have replaced this page meanwhile.
    if (parseHash().name === name) {
      fill(page, content);
      // Which route is on screen (the browser tests wait for it).
      document.body.dataset.rendered = location.hash;
    }
  } catch (e) {
    fill(page, h("p.form-error", { role: "alert" }, String(e)));
  }
}

function signedIn(s) {
  session = s;
  setCsrfToken(s ? s.csrf_token : "");
  if (s) setTimeZone(s.timezone);
  if (s && !localStorage.getItem("hubgate.lang") && s.locale === "zh-CN") setLang("zh");
  route();
}

whenSignedOut(() => {
  if (session) signedIn(null);
});

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").textContent = "";
  const result = await api("POST", "/ui/api/session", { token: $("token").value });
  $("token").value = "";
  if (result.ok) signedIn(result.data);
  else $("error").textContent = result.error.message;
});

$("sign-out").addEventListener("click", async () => {
  const result = await api("DELETE", "/ui/api/session");
  if (result.ok || result.status === 401) {
    location.hash = "";
    signedIn(null);
  }
});

$("lang").addEventListener("click", () => {
  setLang(lang() === "zh" ? "en" : "zh");
  route();
});

window.addEventListener("hashchange", route);
api("GET", "/ui/api/session").then((r) => signedIn(r.ok ? r.data : null));
