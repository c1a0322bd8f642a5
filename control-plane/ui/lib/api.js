// The public admin API, as the signed-in console session. State-changing
// calls carry the session's CSRF token.
let csrfToken = "";
let onSignedOut = () => {};

export function setCsrfToken(token) {
  csrfToken = token || "";
}

export function whenSignedOut(callback) {
  onSignedOut = callback;
}

/** Calls the API; resolves to {ok, status, data, error}, where `error` is
 * the API's {code, message, field} (or a network error's message). */
export async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET") headers["x-csrf-token"] = csrfToken;
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (e) {
    return { ok: false, status: 0, data: null, error: { code: "network", message: String(e) } };
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (resp.status === 401 && !path.startsWith("/ui/api/session")) onSignedOut();
  const error = resp.ok ? null : (data && data.error) || { code: `http_${resp.status}`, message: `HTTP ${resp.status}` };
  return { ok: resp.ok, status: resp.status, data, error };
}

/** A query string from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** A one-click change: calls the API, then `then(data)` on success, else
 * shows the API's message. */
export async function act(method, path, body, then) {
  const result = await api(method, path, body);
  if (result.ok) then(result.data);
  else alert(result.error.message);
  return result;
}
