// The admin console: the `/admin/...` API with the operator key, and the gateway's
// Prometheus `/metrics` for live connections and message rates per tenant.
import { request, el, clock } from "/app/api.js";

const $ = (id) => document.getElementById(id);
const PAGE = 100;
const state = { key: null, tenants: [], pinned: [], offset: 0, selected: null, samples: new Map(), live: new Map() };
window.adminConsole = state;

const api = (method, path, body) => request(method, path, { "X-API-Key": state.key }, body);
const shown = (e) => ($("console-error").textContent = e.message);

// ---- the key ------------------------------------------------------------------------

async function open(key) {
  state.key = key;
  try {
    await loadTenants();
  } catch (e) {
    state.key = null;
    throw e;
  }
  sessionStorage.setItem("chat.admin", key);
  $("key-section").hidden = true;
  $("console").hidden = false;
  sample();
}

$("key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("key-error").textContent = "";
  try {
    await open($("admin-key").value.trim());
  } catch (e) {
    $("key-error").textContent = e.status === 403 ? "That is a tenant's key; the console needs the operator key." : e.message;
  }
});

$("admin-signout").addEventListener("click", () => {
  sessionStorage.removeItem("chat.admin");
  location.reload();
});

// ---- tenants ------------------------------------------------------------------------

async function loadTenants() {
  const got = await api("GET", `/admin/tenants?limit=${PAGE}&offset=0`);
  state.tenants = Array.isArray(got) ? got : got.tenants || [];
  state.offset = state.tenants.length;
  $("tenants-more").hidden = state.tenants.length < PAGE;
  renderTenants();
}

$("tenants-more").addEventListener("click", async () => {
  try {
    const got = await api("GET", `/admin/tenants?limit=${PAGE}&offset=${state.offset}`);
    const more = Array.isArray(got) ? got : got.tenants || [];
    state.tenants.push(...more);
    state.offset += more.length;
    $("tenants-more").hidden = more.length < PAGE;
    renderTenants();
  } catch (e) {
    shown(e);
  }
});

/** Puts `t` at the top of the table (found or created here; the list pages oldest first). */
function pin(t) {
  state.pinned = [t, ...state.pinned.filter((p) => p.tenant_id !== t.tenant_id)];
}

function renderTenants() {
  const pinned = new Set(state.pinned.map((t) => t.tenant_id));
  const rows = [...state.pinned, ...state.tenants.filter((t) => !pinned.has(t.tenant_id))];
  $("tenants").tBodies[0].replaceChildren(
    ...rows.map((t) => {
      const live = state.live.get(t.tenant_id) || {};
      return el(
        "tr",
        { dataset: { tenant: t.tenant_id }, class: state.selected === t.tenant_id ? "current" : "" },
        el("td", { class: "id" }, t.tenant_id),
        el("td", { class: "name" }, t.name),
        el("td", { class: "limit" }, t.rate_limit_per_sec),
        el("td", { class: "webhook" }, t.webhook_url || "\u2014"),
        el("td", { class: "conns" }, live.sockets ?? 0),
        el("td", { class: "rate", dataset: { total: live.total ?? 0 }, title: `${live.total ?? 0} since the gateway started` }, (live.rate ?? 0).toFixed(1)),
        el("td", {}, el("button", { class: "manage", type: "button", onclick: () => select(t.tenant_id) }, "manage")),
      );
    }),
  );
}

$("new-tenant").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { name: $("new-tenant-name").value.trim() };
  const id = $("new-tenant-id").value.trim();
  const limit = $("new-tenant-limit").value;
  if (id) body.tenant_id = id;
  if (limit) body.rate_limit_per_sec = Number(limit);
  try {
    const t = await api("POST", "/admin/tenants", body);
    $("new-key").textContent = `${t.tenant_id}: API key ${t.api_key} (shown once: copy it now)`;
    $("new-tenant").reset();
    pin(t);
    renderTenants();
  } catch (e) {
    shown(e);
  }
});

$("find-tenant").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const id = $("find-id").value.trim();
  if (id) await select(id);
});

/** Opens a tenant's details (and pins it to the top of the table). */
async function select(id) {
  $("tenant-detail").hidden = true; // shown again once filled in with this tenant
  try {
    const t = await api("GET", `/admin/tenants/${encodeURIComponent(id)}`);
    pin(t);
    state.selected = id;
    $("console-error").textContent = "";
    $("tenant-detail").hidden = false;
    $("detail-id").textContent = id;
    $("t-name").value = t.name || "";
    $("t-limit").value = t.rate_limit_per_sec;
    $("t-webhook").value = t.webhook_url || "";
    $("t-secret").value = "";
    $("t-secret").placeholder = t.webhook_secret_set ? "(set)" : "(none)";
    $("t-attempts").value = (t.retry && t.retry.max_attempts) || "";
    $("t-backoff").value = (t.retry && t.retry.backoff_ms) || "";
    $("saved").textContent = "";
    $("rotated-key").textContent = "";
    renderTenants();
    await loadDeadLetters();
    await loadModeration();
  } catch (e) {
    shown(e);
  }
}

$("tenant-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("saved").textContent = "saving\u2026";
  const body = {
    name: $("t-name").value.trim(),
    rate_limit_per_sec: Number($("t-limit").value),
    webhook_url: $("t-webhook").value.trim(),
  };
  if ($("t-secret").value) body.webhook_secret = $("t-secret").value;
  const retry = {};
  if ($("t-attempts").value) retry.max_attempts = Number($("t-attempts").value);
  if ($("t-backoff").value) retry.backoff_ms = Number($("t-backoff").value);
  if (Object.keys(retry).length) body.retry = retry;
  try {
    await api("PATCH", `/admin/tenants/${encodeURIComponent(state.selected)}`, body);
    $("saved").textContent = "saved";
    $("console-error").textContent = "";
    pin(await api("GET", `/admin/tenants/${encodeURIComponent(state.selected)}`));
    renderTenants();
  } catch (e) {
    $("saved").textContent = "";
    shown(e);
  }
});

$("rotate-key").addEventListener("click", async () => {
  try {
    const r = await api("POST", `/admin/tenants/${encodeURIComponent(state.selected)}/rotate-key`);
    $("rotated-key").textContent = `New API key ${r.api_key} (shown once)`;
    pin(await api("GET", `/admin/tenants/${encodeURIComponent(state.selected)}`));
    renderTenants();
  } catch (e) {
    shown(e);
  }
});

// ---- moderation: the tenant's flags and moderation log --------------------------------

/** A table's body: `rows`, or one cell saying there is nothing. */
function fill(table, rows, columns, none) {
  $(table).tBodies[0].replaceChildren(
    ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: columns, class: "hint" }, none))]),
  );
}

async function loadModeration() {
  const tenant = state.selected;
  const t = encodeURIComponent(tenant);
  const [flags, log] = await Promise.all([
    api("GET", `/admin/tenants/${t}/flags?status=${$("flags-status").value}&limit=100`),
    api("GET", `/admin/tenants/${t}/moderation-log?limit=100`),
  ]);
  if (tenant !== state.selected) return;
  const when = (iso) => `${new Date(iso).toLocaleDateString()} ${clock(iso)}`;
  fill(
    "flags",
    flags.flags.map((f) =>
      el(
        "tr",
        { dataset: { flag: f.flag_id } },
        el("td", {}, when(f.created_at)),
        el("td", {}, f.room_id),
        el("td", {}, f.message_id),
        el("td", {}, f.sender_id),
        el("td", {}, f.flagged_by),
        el("td", {}, f.reason),
        el("td", {}, f.resolved_at ? `${f.resolved_by}: ${f.resolution || "resolved"}` : "open"),
      ),
    ),
    7,
    "No flags.",
  );
  fill(
    "moderation-log",
    log.entries.map((e) =>
      el(
        "tr",
        { dataset: { entry: e.entry_id } },
        el("td", {}, when(e.created_at)),
        el("td", {}, e.room_id),
        el("td", {}, e.actor_id),
        el("td", { class: "action" }, e.action),
        el("td", {}, e.target_user_id || ""),
        el("td", {}, e.reason || ""),
        el("td", {}, e.detail ? JSON.stringify(e.detail) : ""),
      ),
    ),
    7,
    "Nothing yet.",
  );
}

$("flags-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  loadModeration().catch(shown);
});
$("log-refresh").addEventListener("click", () => loadModeration().catch(shown));

// ---- dead letters ---------------------------------------------------------------------

async function loadDeadLetters() {
  const tenant = state.selected;
  const got = await api("GET", `/admin/dead-letters?tenant_id=${encodeURIComponent(tenant)}&limit=1000`);
  if (tenant !== state.selected) return;
  const rows = [
    ...(got.failed_messages || []).map((d) => ({ ...d, kind: "message", about: `${d.room_id} ${d.message_id}` })),
    ...(got.failed_notifications || []).map((d) => ({ ...d, kind: "notification", about: `${d.topic} ${d.notification_id}` })),
  ];
  $("dead-letters").tBodies[0].replaceChildren(
    ...(rows.length
      ? rows.map((d) =>
          el(
            "tr",
            { dataset: { dl: d.id } },
            el("td", {}, d.kind),
            el("td", {}, d.about),
            el("td", {}, d.user_id || ""),
            el("td", {}, d.attempts),
            el("td", {}, clock(d.last_attempt_at)),
            el("td", { class: "error" }, d.error),
            el("td", { class: "state" }, el("button", { class: "replay", type: "button", onclick: (ev) => replay(d.id, ev.target) }, "replay")),
          ),
        )
      : [el("tr", { class: "empty" }, el("td", { colspan: 7 }, "no dead letters"))]),
  );
}

$("dl-refresh").addEventListener("click", () => loadDeadLetters().catch(shown));

async function replay(id, button) {
  try {
    await api("POST", `/admin/dead-letters/${encodeURIComponent(id)}/retry`);
    button.closest("td").replaceChildren("replayed");
  } catch (e) {
    shown(e);
  }
}

// ---- metrics ----------------------------------------------------------------------------

/** `name{...,tenant="x"} value` lines of the Prometheus text format, summed by tenant. */
function byTenant(text, name) {
  const out = new Map();
  const re = new RegExp(`^${name}\\{([^}]*)\\}\\s+(\\S+)`, "gm");
  for (const [, labels, value] of text.matchAll(re)) {
    const tenant = /tenant="((?:[^"\\]|\\.)*)"/.exec(labels);
    if (tenant) out.set(tenant[1], (out.get(tenant[1]) || 0) + Number(value));
  }
  return out;
}

function single(text, name) {
  const m = new RegExp(`^${name}\\s+(\\S+)`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

async function sample() {
  try {
    // The operator key: `/metrics` on the gateway's port is for the operator only.
    const res = await fetch("/metrics", { headers: { "X-API-Key": state.key } });
    if (!res.ok) throw new Error(`metrics: ${res.status}`);
    const text = await res.text();
    const now = performance.now();
    const sockets = byTenant(text, "chat_gateway_connections") // every dialect;
    const messages = byTenant(text, "chat_gateway_tenant_messages_total");
    const live = new Map();
    for (const tenant of new Set([...sockets.keys(), ...messages.keys()])) {
      const count = messages.get(tenant) || 0;
      const before = state.samples.get(tenant);
      const rate = before && now > before.at ? ((count - before.count) * 1000) / (now - before.at) : 0;
      state.samples.set(tenant, { count, at: now });
      live.set(tenant, { sockets: sockets.get(tenant) || 0, rate: Math.max(0, rate), total: count });
    }
    state.live = live;
    $("totals").textContent = `${single(text, "chat_gateway_websockets")} open sockets on this gateway`;
    renderTenants();
  } catch (e) {
    $("totals").textContent = "metrics unavailable";
  }
  setTimeout(sample, 2000);
}

const saved = sessionStorage.getItem("chat.admin");
if (saved) open(saved).catch(() => sessionStorage.removeItem("chat.admin"));
