// skillgate approvals inbox. Talks to /approvals/api with the approver's
// bearer token (kept in sessionStorage only). Every text from the server is
// set with textContent, never parsed as HTML.
"use strict";

const KEY = "skillgate.approver.token";
const API = "/approvals/api";

function token() {
  return sessionStorage.getItem(KEY) || "";
}

function status(text) {
  document.getElementById("status").textContent = text;
}

async function call(method, path, body) {
  const headers = { Authorization: "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  let data = null;
  try {
    data = await res.json();
  } catch (_) {
    data = null;
  }
  if (!res.ok) {
    const msg = data && data.error && data.error.message ? data.error.message : "HTTP " + res.status;
    throw new Error(msg);
  }
  return data;
}

function fill(node, selector, text) {
  node.querySelector(selector).textContent = text == null ? "" : String(text);
}

function renderPending(list) {
  const ul = document.getElementById("pending");
  const tpl = document.getElementById("pending-item");
  const keep = new Map();
  for (const li of ul.children) keep.set(li.dataset.id, li);
  const seen = new Set();
  for (const s of list) {
    const r = s.request;
    seen.add(r.id);
    let li = keep.get(r.id);
    if (!li) {
      li = tpl.content.firstElementChild.cloneNode(true);
      li.dataset.id = r.id;
      li.querySelector(".approve").addEventListener("click", () => decide(li, "approve"));
      li.querySelector(".deny").addEventListener("click", () => decide(li, "deny"));
      ul.appendChild(li);
    }
    fill(li, ".rule", r.rule);
    fill(li, ".principal", r.principal);
    fill(li, ".model", r.model || r.path);
    fill(li, ".expires", new Date(r.expires_at).toLocaleTimeString());
    const approvals = new Set(s.decisions.filter((d) => d.verdict === "approve").map((d) => d.approver)).size;
    fill(li, ".count", approvals + " of " + r.approvals_required + " approvals");
    fill(li, ".reason", r.reason);
    fill(li, ".preview", r.preview);
    fill(li, ".digest", "sha256 " + r.body_sha256);
  }
  for (const [id, li] of keep) if (!seen.has(id)) li.remove();
  document.getElementById("empty").hidden = list.length !== 0;
}

function renderGrants(list) {
  const ul = document.getElementById("grants");
  const tpl = document.getElementById("grant-item");
  ul.replaceChildren();
  for (const g of list) {
    const li = tpl.content.firstElementChild.cloneNode(true);
    li.dataset.id = g.id;
    fill(li, ".rule", g.rule);
    fill(li, ".principal", g.principal);
    fill(li, ".expires", new Date(g.expires_at).toLocaleString());
    fill(li, ".by", g.created_by);
    li.querySelector(".revoke").addEventListener("click", async () => {
      try {
        await call("POST", "/grants/" + encodeURIComponent(g.id) + "/revoke");
        status("Grant revoked.");
        refresh();
      } catch (e) {
        status(e.message);
      }
    });
    ul.appendChild(li);
  }
}

async function decide(li, verdict) {
  const reason = li.querySelector(".decision-reason").value;
  const body = { reason };
  if (verdict === "approve" && li.querySelector(".grant").checked) {
    const minutes = parseInt(li.querySelector(".grant-minutes").value, 10);
    if (minutes > 0) body.grant_secs = minutes * 60;
  }
  try {
    const s = await call("POST", "/requests/" + encodeURIComponent(li.dataset.id) + "/" + verdict, body);
    status("Request " + s.status.replace("_", " ") + ".");
    refresh();
  } catch (e) {
    status(e.message);
  }
}

let busy = false;
async function refresh() {
  if (!token() || busy) return;
  busy = true;
  try {
    const pending = await call("GET", "/requests");
    renderPending(pending.data);
    const grants = await call("GET", "/grants");
    renderGrants(grants.data);
    document.body.dataset.approver = pending.approver;
  } catch (e) {
    status(e.message);
  } finally {
    busy = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const field = document.getElementById("token");
    sessionStorage.setItem(KEY, field.value.trim());
    field.value = "";
    status("");
    refresh();
  });
  document.getElementById("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    renderPending([]);
    renderGrants([]);
    status("Token forgotten.");
  });
  refresh();
  setInterval(refresh, 2000);
});
