"use strict";
// The console's sign-in page: it uses only /ui/api/session (see README,
// "Admin console (in progress)").
const $ = (id) => document.getElementById(id);
let csrfToken = null;

function show(session) {
  csrfToken = session ? session.csrf_token : null;
  $("signed-out").hidden = Boolean(session);
  $("signed-in").hidden = !session;
  $("who").textContent = !session ? "" : session.role === "admin" ? "admin" : `user ${session.user_id}`;
}

async function errorMessage(resp) {
  const body = await resp.json().catch(() => null);
  return body && body.error ? body.error.message : `HTTP ${resp.status}`;
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").textContent = "";
  const resp = await fetch("/ui/api/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: $("token").value }),
  });
  $("token").value = "";
  if (resp.ok) {
    show(await resp.json());
  } else {
    $("error").textContent = await errorMessage(resp);
  }
});

$("sign-out").addEventListener("click", async () => {
  const resp = await fetch("/ui/api/session", {
    method: "DELETE",
    headers: { "x-csrf-token": csrfToken || "" },
  });
  if (resp.ok || resp.status === 401) {
    show(null);
  }
});

fetch("/ui/api/session").then(async (resp) => show(resp.ok ? await resp.json() : null));
