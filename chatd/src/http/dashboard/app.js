// chatd dashboard: logs in with the admin token (kept in sessionStorage for this tab only),
// polls GET /admin/v1/stats every second, and drives the admin API for user lookup and actions.
// Plain DOM code; every server-provided string is inserted as text, never as HTML.
"use strict";

const TOKEN_KEY = "chatd-admin-token";
const POLL_MS = 1000;
let pollTimer = null;

const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// Calls the admin API; throws an Error whose message is the API's error message.
async function api(method, path) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: "Bearer " + token() },
    cache: "no-store",
  });
  if (response.status === 401) {
    logout("The admin token was refused.");
    throw new Error("unauthorized");
  }
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const message = body && body.error ? body.error.message : response.statusText;
    throw new Error(message);
  }
  return body;
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function row(cells, header) {
  const tr = el("tr");
  cells.forEach((c, i) => {
    if (c instanceof Node) {
      const td = el("td");
      td.appendChild(c);
      tr.appendChild(td);
    } else {
      tr.appendChild(el(header && i === 0 ? "th" : "td", c));
    }
  });
  return tr;
}

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function fmtUptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
}

function fmtMs(v) {
  return v === null || v === undefined ? "-" : v.toFixed(2);
}

function fmtTime(ms) {
  return ms ? new Date(ms).toLocaleString() : "never";
}

function setStatus(text, bad) {
  const s = $("action-status");
  s.textContent = text;
  s.className = "status" + (bad ? " error" : "");
}

function fillRows(tbody, rows, header) {
  tbody.replaceChildren(...rows.map((r) => row(r, header)));
}

function drawChart(history) {
  const values = history.map((s) => s.messages_per_sec);
  const max = Math.max(1, ...values);
  const n = Math.max(values.length - 1, 1);
  const pts = values.map((v, i) => `${(i / n) * 600},${160 - (v / max) * 150}`);
  $("chart-line").setAttribute("points", pts.join(" "));
  $("chart-area").setAttribute("points", pts.length ? `0,160 ${pts.join(" ")} 600,160` : "");
  $("chart-max").textContent = "max " + max.toFixed(1) + " /s";
  const span = values.length;
  $("chart-from").textContent = span < 120 ? `-${span} s` : `-${Math.round(span / 6) / 10} min`;
}

function render(s) {
  $("version").textContent = "v" + s.version + " · node " + s.node_id;
  $("uptime").textContent = "up " + fmtUptime(s.uptime_secs);
  const ready = $("ready");
  ready.textContent = s.ready ? "ready" : "draining";
  ready.className = "badge " + (s.ready ? "ok" : "draining");
  $("connections").textContent = s.connections;
  $("open-sockets").textContent = s.open_sockets;
  $("online-users").textContent = s.online_users;
  $("rate").textContent = s.messages_per_sec.toFixed(1);
  $("stored").textContent = s.messages_stored;
  $("disk").textContent = fmtBytes(s.disk_bytes);
  $("push-queue").textContent = s.push.queue_depth;
  $("push-dead").textContent = s.push.dead_letters;
  $("push-state").textContent = s.push.enabled ? "" : "(push delivery not enabled on this node)";
  for (const [key, l] of [["send", s.latency.send_to_sent], ["flush", s.latency.store_flush]]) {
    $(`lat-${key}-p50`).textContent = fmtMs(l.p50_ms);
    $(`lat-${key}-p90`).textContent = fmtMs(l.p90_ms);
    $(`lat-${key}-p99`).textContent = fmtMs(l.p99_ms);
    $(`lat-${key}-n`).textContent = l.count;
  }
  fillRows($("shards"), s.shards.map((q) => [q.shard, q.queued, q.fanout]));
  const nonzero = (m) => Object.entries(m).filter(([, v]) => v > 0);
  fillRows($("requests"), [["request", "count"], ...nonzero(s.requests)], true);
  fillRows($("errors"), [["error", "count"], ...nonzero(s.errors)], true);
  drawChart(s.history);
}

async function poll() {
  clearTimeout(pollTimer);
  if (!token()) return;
  try {
    render(await api("GET", "/admin/v1/stats"));
  } catch (e) {
    if (e.message !== "unauthorized") setStatus("stats: " + e.message, true);
  }
  if (token()) pollTimer = setTimeout(poll, POLL_MS);
}

// A destructive button asks for a second click within 5 s before it acts.
function dangerButton(label, id, action) {
  const b = el("button", label, { type: "button", id, class: "danger" });
  let armed = null;
  b.addEventListener("click", async () => {
    if (!armed) {
      b.textContent = "Confirm: " + label.toLowerCase();
      b.classList.add("armed");
      armed = setTimeout(() => { armed = null; b.textContent = label; b.classList.remove("armed"); }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    b.disabled = true;
    try {
      await action();
    } catch (e) {
      if (e.message !== "unauthorized") setStatus(e.message, true);
    }
  });
  return b;
}

async function lookup(user) {
  const out = $("user-result");
  let u;
  try {
    u = await api("GET", "/admin/v1/users/" + encodeURIComponent(user));
  } catch (e) {
    out.replaceChildren(el("p", e.message, { class: "error", id: "lookup-error" }));
    return;
  }
  const state = el("p", null, { id: "user-summary" });
  state.append(
    el("strong", u.user_id), " ",
    el("span", u.online ? "online" : "offline", { class: "tag" + (u.online ? " on" : ""), id: "user-online" }), " ",
    el("span", u.disabled ? "disabled" : "enabled", { class: "tag" + (u.disabled ? " off" : ""), id: "user-disabled" }),
    " · last seen " + fmtTime(u.last_seen) + " · created " + fmtTime(u.created_at * 1000) + " ",
  );
  const toggle = u.disabled
    ? el("button", "Enable user", { type: "button", id: "toggle-disabled" })
    : dangerButton("Disable user", "toggle-disabled", async () => {
        const r = await api("POST", `/admin/v1/users/${u.user_id}/disable`);
        setStatus(`${u.user_id} disabled; ${r.connections_closed} connection(s) closed`);
        lookup(u.user_id);
      });
  if (u.disabled) {
    toggle.addEventListener("click", async () => {
      await api("POST", `/admin/v1/users/${u.user_id}/enable`);
      setStatus(`${u.user_id} enabled`);
      lookup(u.user_id);
    });
  }
  state.append(toggle);
  const table = el("table", null, { id: "devices" });
  table.append(row(["device", "state", "enrolled", "certificate until", ""], true));
  for (const d of u.devices) {
    const status = d.revoked_at ? "revoked " + fmtTime(d.revoked_at * 1000)
      : d.connected ? (d.away ? "connected (away)" : "connected") : "not connected";
    const action = d.revoked_at ? el("span", "")
      : dangerButton("Revoke", "revoke-" + d.device_id, async () => {
          await api("DELETE", `/admin/v1/users/${u.user_id}/devices/${d.device_id}`);
          setStatus(`device ${d.device_id} of ${u.user_id} revoked`);
          lookup(u.user_id);
        });
    const tr = row([d.device_id, status, fmtTime(d.created_at * 1000), fmtTime(d.cert_expires_at * 1000), action]);
    tr.id = "device-" + d.device_id;
    table.append(tr);
  }
  out.replaceChildren(state, u.devices.length ? table : el("p", "no devices", { class: "muted" }));
}

async function loadDeadLetters() {
  const out = $("dead-letters");
  let body;
  try {
    body = await api("GET", "/admin/v1/push/dead-letters");
  } catch (e) {
    return;
  }
  if (!body.push_enabled) {
    out.replaceChildren(el("p", "Push delivery is not enabled on this node: nothing is queued or dead-lettered.", { class: "muted" }));
    return;
  }
  if (!body.dead_letters.length) {
    out.replaceChildren(el("p", "No dead letters.", { class: "muted" }));
    return;
  }
  const table = el("table");
  table.append(row(["id", "user", "device", "platform", "attempts", "last error", "failed", ""], true));
  for (const d of body.dead_letters) {
    const retry = el("button", "Retry", { type: "button" });
    retry.addEventListener("click", async () => {
      await api("POST", `/admin/v1/push/dead-letters/${encodeURIComponent(d.id)}/retry`);
      setStatus(`dead letter ${d.id} queued again`);
      loadDeadLetters();
    });
    const drop = dangerButton("Drop", "drop-" + d.id, async () => {
      await api("DELETE", `/admin/v1/push/dead-letters/${encodeURIComponent(d.id)}`);
      setStatus(`dead letter ${d.id} dropped`);
      loadDeadLetters();
    });
    const actions = el("span");
    actions.append(retry, " ", drop);
    table.append(row([d.id, d.user, d.device, d.platform, d.attempts, d.last_error, fmtTime(d.failed_at), actions]));
  }
  out.replaceChildren(table);
}

async function login(candidate) {
  sessionStorage.setItem(TOKEN_KEY, candidate);
  try {
    render(await api("GET", "/admin/v1/stats"));
  } catch (e) {
    if (e.message !== "unauthorized") logout(e.message);
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  $("login-error").textContent = "";
  loadDeadLetters();
  pollTimer = setTimeout(poll, POLL_MS);
}

function logout(message) {
  clearTimeout(pollTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    login($("token").value.trim());
  });
  $("lookup-form").addEventListener("submit", (e) => {
    e.preventDefault();
    lookup($("lookup-user").value.trim());
  });
  $("logout").addEventListener("click", () => logout(""));
  if (token()) login(token());
});
