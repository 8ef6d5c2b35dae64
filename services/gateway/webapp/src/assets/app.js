// The web chat app. It uses the public APIs only:
// - REST (rest-rooms.md) with a user token as `Authorization: Bearer` (or the API key
//   and `X-User-Id`): rooms with unread counts, history paging, create, edit, delete;
// - the `/ws/{room_id}` WebSocket (ws-rooms.md) for the open room: live messages,
//   sends (idempotent by `local_id`), typing, who is online, read cursors, and the
//   `message_status` / `delivered` / `read` frames behind the ticks. When the socket
//   drops it reconnects with `last_seq` (the highest seq shown) and resends what was
//   not yet acknowledged, so nothing is lost or shown twice;
// - room moderation for the open room's moderators, admins and owner: ban, mute (for
//   some minutes or until lifted), lift them, and set slow mode (`/rooms/{id}/bans`,
//   `/mutes`, `/settings`); everyone sees the room's `moderation` frames as a notice;
// - blocks (`PUT|DELETE /blocks/{user_id}`, with or without `hide_in_groups`: each
//   block in the list shows its choice and a checkbox to change it) and search
//   (`GET /search`, with a sender);
// - `POST /api/chat/{room_id}/messages/file` (rest-chat.md: the chat id is the room
//   id) to attach a file, with what is in the composer as its caption. Messages show
//   their `attachments` (in `/ws` frames and history alike): images as thumbnails,
//   other files as a link with name and size. The signed links also want the reader's
//   credentials, so the page fetches them with its headers into object URLs;
// - reactions and pins (issue 23): each message shows its `reactions` as chips (click
//   one to add or take back yours, "+" opens a small picker, "who?" lists who reacted
//   through `GET .../reactions/{emoji}`), a pin button (room admins, or anyone in a
//   DM: the API says no otherwise) and the room's pinned messages in a panel; all kept
//   live by the `/ws` frames `reaction_added` / `reaction_removed` /
//   `message_pinned` / `message_unpinned`.
// - Threads: the room shows top-level messages (`?threads=false`), each with its
//   thread's summary; a thread opens beside the room (`GET .../thread`) and is replied
//   in over the socket (`send_message` with `parent_id`); replies and `thread_updated`
//   frames keep both live.
// - Mentions: typing `@` offers the room's members (and `@channel`); the `@names` of
//   members in a message are sent as its `mentions`, highlighted when shown, and the
//   room list shows `unread_mentions`.
import { request, upload, download, el, clock, bytes, ApiError } from "/app/api.js";

const $ = (id) => document.getElementById(id);
const PAGE = 30;
const RANK = { pending: 0, sent: 1, delivered: 2, read: 3 };
/** The picker's emoji. Any emoji sequence or `:name:` works through the API. */
const PICKER = ["\u{1F44D}", "\u2764\uFE0F", "\u{1F602}", "\u{1F389}", "\u{1F62E}", "\u{1F622}"];
const TICK = { pending: "\u23F1", sent: "\u2713", delivered: "\u2713\u2713", read: "\u2713\u2713", failed: "!" };

const state = {
  auth: null, // {user, token} or {user, apiKey}
  rooms: [],
  room: null, // the open room (as listed)
  messages: new Map(), // message id -> message (with `status` for mine)
  elements: new Map(), // message id or local id -> element
  pending: new Map(), // local_id -> content, until the server acknowledged it
  oldest: null, // lowest seq shown
  newest: 0, // highest seq shown: where a reconnect resumes
  readSent: 0,
  ws: null,
  wsGen: 0, // frames of an older socket are ignored
  retries: 0,
  retryTimer: null,
  offline: false,
  online: new Set(),
  // Users online beyond those listed (a big room greets with a count).
  onlineMore: 0,
  typers: new Map(),
  typingSentAt: 0,
  typingStop: null,
  onCursor: null, // waiting for the answer to a `read`
  files: new Map(), // signed link -> {blob: Promise of an object URL, url: the object URL once there}
  pins: [], // the open room's pinned messages, most recently pinned first
  picking: null, // the message id whose emoji picker is open
  members: [], // the open room's member ids (for mention autocomplete)
  thread: null, // the open thread: {parentId, replies: Map of id -> message}
};
window.chatApp = state; // for a look from the browser console

// ---- credentials ------------------------------------------------------------------

function headers() {
  const a = state.auth;
  return a.token ? { Authorization: `Bearer ${a.token}` } : { "X-API-Key": a.apiKey, "X-User-Id": a.user };
}

const api = (method, path, body) => request(method, path, headers(), body);

function tokenUser(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).sub || null;
  } catch (e) {
    return null;
  }
}

async function signIn(auth) {
  state.auth = auth;
  try {
    await api("GET", "/rooms?limit=1");
  } catch (e) {
    state.auth = null;
    throw e;
  }
  sessionStorage.setItem("chat.auth", JSON.stringify(auth));
  $("me").textContent = auth.user;
  $("signin").hidden = true;
  $("chat").hidden = false;
  await refreshRooms();
}

function signOut(message) {
  closeSocket();
  sessionStorage.removeItem("chat.auth");
  state.auth = null;
  state.room = null;
  $("chat").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
}

$("dev-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("signin-error").textContent = "";
  const user = $("dev-user").value.trim();
  try {
    const t = await request("POST", "/dev/token", {}, { user_id: user });
    await signIn({ user: t.user_id, token: t.token });
  } catch (e) {
    $("signin-error").textContent =
      e.status === 404 && e.message === "No such endpoint"
        ? "Development sign-in is off on this gateway (GATEWAY_DEV_LOGIN): use a token or key below."
        : e.message;
  }
});

$("paste-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("signin-error").textContent = "";
  const token = $("paste-token").value.trim();
  const apiKey = $("paste-key").value.trim();
  const named = $("paste-user").value.trim();
  try {
    if (token) await signIn({ user: tokenUser(token) || named || "me", token });
    else if (apiKey && named) await signIn({ user: named, apiKey });
    else throw new Error("Give a user token, or an API key and a user id.");
  } catch (e) {
    $("signin-error").textContent = e.message;
  }
});

$("signout").addEventListener("click", () => signOut());

// ---- rooms ------------------------------------------------------------------------

function roomTitle(room) {
  if (room.name) return room.name;
  if (room.type === "dm" && room.unique_key) {
    const other = room.unique_key.split(":").slice(1).find((u) => u !== state.auth.user);
    return other ? `@${other}` : "DM";
  }
  return room.room_id;
}

async function refreshRooms() {
  if (!state.auth) return;
  try {
    const got = await api("GET", "/rooms?limit=100");
    state.rooms = Array.isArray(got) ? got : got.rooms || [];
    $("rooms-error").textContent = "";
  } catch (e) {
    if (e.status === 401) return signOut("Your sign-in expired; sign in again.");
    $("rooms-error").textContent = e.message;
    return;
  }
  const list = $("rooms");
  list.replaceChildren(
    ...state.rooms.map((r) => {
      const last = r.last_message;
      const unread = state.room && state.room.room_id === r.room_id ? 0 : r.unread_count || 0;
      return el(
        "li",
        {
          class: "room" + (state.room && state.room.room_id === r.room_id ? " current" : ""),
          dataset: { room: r.room_id },
          onclick: () => openRoom(r.room_id),
        },
        el("span", { class: "room-name" }, roomTitle(r)),
        el("span", { class: "unread", hidden: unread === 0 }, unread),
        el("span", { class: "mentions", hidden: !(r.unread_mentions > 0) || unread === 0, title: "mentions" }, `@${r.unread_mentions || 0}`),
        el("span", { class: "room-last" }, last ? `${last.sender_id}: ${last.deleted_at ? "(deleted)" : last.content}` : "no messages yet"),
      );
    }),
  );
}

$("new-room").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("rooms-error").textContent = "";
  const members = $("new-members").value.split(/[\s,]+/).filter(Boolean);
  const body = { type: $("new-type").value, members };
  const name = $("new-name").value.trim();
  if (name) body.name = name;
  try {
    const room = await api("POST", "/rooms", body);
    $("new-members").value = "";
    $("new-name").value = "";
    await refreshRooms();
    await openRoom(room.room_id);
  } catch (e) {
    // A DM that exists already: its id is in the message; open it.
    const existing = e.code === "CONFLICT" && /room_[A-Za-z0-9_-]+/.exec(e.message);
    if (existing) {
      $("new-members").value = "";
      $("new-name").value = "";
      return openRoom(existing[0]);
    }
    $("rooms-error").textContent = e.message;
  }
});

// ---- the open room ------------------------------------------------------------------

async function openRoom(roomId) {
  closeSocket();
  let room = state.rooms.find((r) => r.room_id === roomId);
  try {
    if (!room) room = await api("GET", `/rooms/${encodeURIComponent(roomId)}`);
  } catch (e) {
    $("room-error").textContent = e.message;
    return;
  }
  Object.assign(state, { room, oldest: null, newest: 0, readSent: 0 });
  state.messages.clear();
  state.elements.clear();
  state.pending.clear();
  state.online.clear();
  state.onlineMore = 0;
  state.typers.clear();
  forgetFiles();
  $("message-list").replaceChildren();
  $("room-title").textContent = roomTitle(room);
  $("room-error").textContent = "";
  renderOnline();
  renderTyping();
  closeThread();
  loadMembers(room);
  $("composer").disabled = false;
  $("send").disabled = false;
  $("attach").disabled = false;
  $("upload-status").textContent = "";
  state.pins = [];
  state.picking = null;
  renderPins();
  await loadOlder();
  scrollToEnd();
  connect();
  refreshRooms();
  loadPins();
  loadRole(room.room_id);
}

// ---- moderation of the open room ------------------------------------------------------

/** Shows the moderation panel to the room's moderators and above (slow mode: admins). */
async function loadRole(roomId) {
  $("moderation").hidden = true;
  $("mod-status").textContent = "";
  try {
    const members = await api("GET", `/rooms/${encodeURIComponent(roomId)}/members?limit=100`);
    if (!state.room || state.room.room_id !== roomId) return;
    const me = members.find((m) => m.user_id === state.auth.user);
    const role = me ? me.role : "member";
    state.role = role;
    if (role === "member") return;
    $("moderation").hidden = false;
    $("slow-form").hidden = role === "moderator";
    const settings = await api("GET", `/rooms/${encodeURIComponent(roomId)}/settings`);
    $("slow-secs").value = settings.slow_mode_secs;
  } catch (e) {
    $("mod-status").textContent = e.message;
  }
}

async function moderate(kind, lift) {
  const user = $("mod-user").value.trim();
  if (!user || !state.room) return;
  const base = `/rooms/${encodeURIComponent(state.room.room_id)}/${kind}`;
  try {
    if (lift) {
      await api("DELETE", `${base}/${encodeURIComponent(user)}`);
    } else {
      const body = { user_id: user };
      if ($("mod-reason").value.trim()) body.reason = $("mod-reason").value.trim();
      const minutes = Number($("mod-minutes").value);
      if (minutes > 0) body.expires_at = new Date(Date.now() + minutes * 60000).toISOString();
      await api("POST", base, body);
    }
    const verb = { bans: ["banned", "ban lifted"], mutes: ["muted", "unmuted"] }[kind][lift ? 1 : 0];
    $("mod-status").textContent = `${user}: ${verb}`;
  } catch (e) {
    $("mod-status").textContent = e.message;
  }
}

$("mod-ban").addEventListener("click", () => moderate("bans", false));
$("mod-mute").addEventListener("click", () => moderate("mutes", false));
$("mod-unban").addEventListener("click", () => moderate("bans", true));
$("mod-unmute").addEventListener("click", () => moderate("mutes", true));
$("slow-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const s = await api("PATCH", `/rooms/${encodeURIComponent(state.room.room_id)}/settings`, {
      slow_mode_secs: Number($("slow-secs").value || 0),
    });
    $("mod-status").textContent = s.slow_mode_secs ? `slow mode: ${s.slow_mode_secs} s` : "slow mode off";
  } catch (e) {
    $("mod-status").textContent = e.message;
  }
});

/** A `moderation` frame as a line for everyone in the room. */
function moderationNotice(d) {
  const who = d.user_id || "";
  const text = {
    ban: `${who} was banned by ${d.actor_id}`,
    unban: `${d.actor_id} lifted ${who}'s ban`,
    mute: `${who} was muted by ${d.actor_id}`,
    unmute: `${who} was unmuted by ${d.actor_id}`,
    role: `${who} is now ${d.role} (by ${d.actor_id})`,
    settings: d.slow_mode_secs ? `slow mode: one message per ${d.slow_mode_secs} s` : "slow mode is off",
  }[d.action] || d.action;
  $("mod-status").textContent = text + (d.reason ? ` (${d.reason})` : "");
  if (d.action === "role" && d.user_id === state.auth.user && state.room) loadRole(state.room.room_id);
}

// ---- blocks and search -----------------------------------------------------------------

/** Blocks `user`, hiding their messages in groups or not; says so in the status line. */
async function block(user, hide) {
  try {
    const b = await api("PUT", `/blocks/${encodeURIComponent(user)}`, { hide_in_groups: hide });
    $("people-status").textContent = b.hide_in_groups
      ? `${user} is blocked, their messages hidden in groups`
      : `${user} is blocked (DMs, typing and presence)`;
  } catch (e) {
    $("people-status").textContent = e.message;
  }
  loadBlocks();
}

/** One block in the list: who, what it hides, and a checkbox to change that. */
function blockItem(b) {
  const hide = el("input", {
    type: "checkbox",
    class: "hide-in-groups",
    checked: b.hide_in_groups,
    "aria-label": `Hide ${b.user_id}'s messages in groups`,
    onchange: (ev) => block(b.user_id, ev.target.checked),
  });
  return el(
    "li",
    { dataset: { blocked: b.user_id, hideInGroups: String(b.hide_in_groups) } },
    el("b", {}, b.user_id),
    el("span", { class: "hint what" }, b.hide_in_groups ? "messages hidden in groups" : "DMs, typing, presence"),
    el("label", { class: "check" }, hide, "hide in groups"),
  );
}

async function loadBlocks() {
  try {
    const got = await api("GET", "/blocks");
    $("blocks").replaceChildren(...got.blocks.map(blockItem));
  } catch (e) {
    $("people-status").textContent = e.message;
  }
}

$("block-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const user = $("block-user").value.trim();
  if (!user) return;
  block(user, $("block-hide").checked);
});
$("unblock").addEventListener("click", async () => {
  const user = $("block-user").value.trim();
  if (!user) return;
  try {
    await api("DELETE", `/blocks/${encodeURIComponent(user)}`);
    $("people-status").textContent = `${user} is not blocked`;
  } catch (e) {
    $("people-status").textContent = e.message;
  }
  loadBlocks();
});
$("people").addEventListener("toggle", () => {
  if ($("people").open) loadBlocks();
});

$("search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = $("search-q").value.trim();
  if (!q) return;
  const params = new URLSearchParams({ q });
  const sender = $("search-sender").value.trim();
  if (sender) params.set("sender_id", sender);
  try {
    const got = await api("GET", `/search?${params}`);
    $("search-results").replaceChildren(
      ...got.results.map((r) => {
        // The snippet is HTML-escaped text with <mark> around the matches.
        const snippet = el("span", { class: "snippet" });
        snippet.innerHTML = r.snippet;
        return el(
          "li",
          { class: "hit", dataset: { room: r.message.room_id }, onclick: () => openRoom(r.message.room_id) },
          el("b", {}, r.message.sender_id),
          ": ",
          snippet,
        );
      }),
    );
    $("people-status").textContent = got.results.length ? "" : "Nothing found.";
  } catch (e) {
    $("people-status").textContent = e.message;
  }
});

/** One page of history below the oldest shown (the newest page at first). */
async function loadOlder() {
  const room = state.room;
  const before = state.oldest === null ? "" : `&before_seq=${state.oldest}`;
  const path =
    `/rooms/${encodeURIComponent(room.room_id)}/messages?threads=false&limit=${PAGE}` +
    (before || "&before_seq=9007199254740991");
  let page;
  try {
    page = await api("GET", path);
  } catch (e) {
    $("room-error").textContent = e.message;
    return;
  }
  if (state.room !== room) return;
  const list = $("messages");
  const height = list.scrollHeight;
  for (const m of page) upsert(m);
  if (page.length) state.oldest = Math.min(state.oldest ?? Infinity, page[0].seq);
  $("history-more").hidden = page.length < PAGE || state.oldest <= 1;
  list.scrollTop += list.scrollHeight - height; // keep what was on screen in place
  markRead();
}

$("history-more").addEventListener("click", () => loadOlder());
$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop === 0 && !$("history-more").hidden) loadOlder();
});

function scrollToEnd() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

/** A stored message, from history or a frame: shown once, in seq order. */
function upsert(raw) {
  const id = raw.id || raw.message_id;
  if (raw.parent_id) return upsertReply({ ...raw, id });
  const old = state.messages.get(id);
  const m = { ...old, ...raw, id };
  if (m.sender_id === state.auth.user) m.status = higher(old && old.status, raw.status in RANK ? raw.status : "sent");
  state.messages.set(id, m);
  state.newest = Math.max(state.newest, m.seq);
  if (m.local_id && state.elements.has(m.local_id)) {
    state.elements.get(m.local_id).remove();
    state.elements.delete(m.local_id);
    state.pending.delete(m.local_id);
  }
  const node = render(m);
  const current = state.elements.get(id);
  if (current) {
    current.replaceWith(node);
  } else {
    const after = [...$("message-list").children].find((c) => c.dataset.seq && Number(c.dataset.seq) > m.seq);
    $("message-list").insertBefore(node, after || firstPending());
  }
  state.elements.set(id, node);
  if (state.thread && state.thread.parentId === id) renderThread(); // the parent shown there too
}

const firstPending = () => $("message-list").querySelector(".msg.pending");

function higher(a, b) {
  if (!a) return b;
  if (!b) return a;
  return RANK[b] > RANK[a] ? b : a;
}

function render(m) {
  const mine = m.sender_id === state.auth.user;
  const deleted = Boolean(m.deleted_at);
  return el(
    "div",
    {
      class: "msg" + (mine ? " mine" : "") + (deleted ? " deleted" : "") + (mentionsMe(m) ? " mentions-me" : ""),
      dataset: { id: m.id, seq: m.seq },
    },
    el("span", { class: "sender" }, m.sender_name || m.sender_id),
    el("span", { class: "content" }, deleted ? "message deleted" : withMentions(m)),
    m.edited_at && !deleted ? el("span", { class: "edited" }, "(edited)") : null,
    !deleted && m.attachments && m.attachments.length
      ? el("div", { class: "files" }, m.attachments.map((a, i) => renderFile(m, a, i)))
      : null,
    el("span", { class: "time" }, clock(m.created_at)),
    mine ? el("span", { class: "ticks", dataset: { status: m.status }, title: m.status }, TICK[m.status]) : null,
    mine && !deleted && !m.parent_id
      ? el("button", { class: "edit", type: "button", onclick: () => startEdit(m) }, "edit")
      : null,
    mine && !deleted ? el("button", { class: "delete", type: "button", onclick: () => remove(m) }, "delete") : null,
    !m.parent_id && m.thread
      ? el("button", { class: "thread-link", type: "button", onclick: () => openThread(m.id) },
          `${m.thread.reply_count} ${m.thread.reply_count === 1 ? "reply" : "replies"}`)
      : null,
    !m.parent_id && !deleted && !m.thread && m.seq
      ? el("button", { class: "reply", type: "button", onclick: () => openThread(m.id) }, "reply")
      : null,
    m.pinned_at ? el("span", { class: "pinned", title: `pinned by ${m.pinned_by}` }, "\u{1F4CC}") : null,
    !deleted
      ? el("button", { class: "pin", type: "button", onclick: () => togglePin(m) }, m.pinned_at ? "unpin" : "pin")
      : null,
    deleted ? null : renderReactions(m),
  );
}

// ---- reactions and pins ---------------------------------------------------------------

/** A message's reaction chips, the picker and "who?". */
function renderReactions(m) {
  const reactions = m.reactions || [];
  const chips = reactions.map((r) =>
    el(
      "button",
      {
        class: "reaction" + (r.me ? " me" : ""),
        type: "button",
        dataset: { emoji: r.emoji },
        title: r.user_ids.join(", ") + (r.count > r.user_ids.length ? ` and ${r.count - r.user_ids.length} more` : ""),
        onclick: () => react(m, r.emoji, !r.me),
      },
      `${r.emoji} ${r.count}`,
    ),
  );
  const picker =
    state.picking === m.id
      ? el(
          "span",
          { class: "picker" },
          PICKER.map((e) =>
            el("button", { class: "pick", type: "button", dataset: { emoji: e }, onclick: () => react(m, e, true) }, e),
          ),
        )
      : null;
  return el(
    "div",
    { class: "reactions" },
    chips,
    el("button", { class: "react", type: "button", title: "React", onclick: () => togglePicker(m) }, "+"),
    picker,
    reactions.length ? el("button", { class: "who", type: "button", onclick: () => showWho(m) }, "who?") : null,
    el("span", { class: "who-list" }, m.who || ""),
  );
}

// ---- mentions ---------------------------------------------------------------------

/** Whether `m` mentions me (by name or @channel, and not mine). */
const mentionsMe = (m) =>
  m.sender_id !== state.auth.user && (m.mentions || []).some((u) => u === state.auth.user || u === "@channel");

/** The content of `m`, its mentions in `<mark class="mention">`. */
function withMentions(m) {
  const named = new Set(m.mentions || []);
  if (!named.size) return m.content;
  const parts = [];
  let last = 0;
  for (const match of m.content.matchAll(/@([A-Za-z0-9_@+=~-]+)/g)) {
    const id = match[1];
    if (!(named.has(id) || (id === "channel" && named.has("@channel")))) continue;
    parts.push(m.content.slice(last, match.index), el("mark", { class: "mention" }, match[0]));
    last = match.index + match[0].length;
  }
  parts.push(m.content.slice(last));
  return parts;
}

/** The members named `@id` in `content` (and `@channel`), for a send's `mentions`. */
function mentionsIn(content) {
  const found = [];
  for (const match of content.matchAll(/@([A-Za-z0-9_@+=~-]+)/g)) {
    const id = match[1] === "channel" ? "@channel" : match[1];
    const known = id === "@channel" || (state.members.includes(id) && id !== state.auth.user);
    if (known && !found.includes(id)) found.push(id);
  }
  return found;
}

async function loadMembers(room) {
  try {
    const members = await api("GET", `/rooms/${encodeURIComponent(room.room_id)}/members?limit=100`);
    if (state.room === room) state.members = members.map((mb) => mb.user_id);
  } catch (e) {
    state.members = [];
  }
}

/** Offers members matching the `@word` being typed in `input`, in `menu`. */
function suggest(input, menu) {
  const before = input.value.slice(0, input.selectionStart ?? input.value.length);
  const typed = /(?:^|\s)@([A-Za-z0-9_@+=~-]*)$/.exec(before);
  if (!typed) return void (menu.hidden = true);
  const prefix = typed[1].toLowerCase();
  const names = [...state.members.filter((u) => u !== state.auth.user), "channel"].filter((u) =>
    u.toLowerCase().startsWith(prefix),
  );
  menu.replaceChildren(
    ...names.slice(0, 8).map((u) =>
      el("button", { class: "mention-option", type: "button", dataset: { user: u }, onclick: () => {
        const start = before.length - typed[1].length;
        input.value = input.value.slice(0, start) + u + " " + input.value.slice(before.length);
        menu.hidden = true;
        input.focus();
      } }, `@${u}`),
    ),
  );
  menu.hidden = names.length === 0;
}

$("composer").addEventListener("input", () => suggest($("composer"), $("mention-menu")));
$("thread-composer").addEventListener("input", () => suggest($("thread-composer"), $("thread-mention-menu")));

// ---- threads ------------------------------------------------------------------------

async function openThread(parentId) {
  const room = state.room;
  state.thread = { parentId, replies: new Map() };
  $("thread").hidden = false;
  document.querySelector(".layout").classList.add("with-thread");
  $("thread-list").replaceChildren();
  try {
    const page = await api(
      "GET",
      `/rooms/${encodeURIComponent(room.room_id)}/messages/${encodeURIComponent(parentId)}/thread?limit=100`,
    );
    if (state.room !== room || !state.thread || state.thread.parentId !== parentId) return;
    const parent = { ...page.parent, id: page.parent.message_id };
    state.messages.set(parent.id, { ...state.messages.get(parent.id), ...parent });
    for (const r of page.replies) state.thread.replies.set(r.message_id, { ...r, id: r.message_id });
    renderThread();
  } catch (e) {
    $("room-error").textContent = e.message;
  }
  $("thread-composer").focus();
}

function closeThread() {
  state.thread = null;
  $("thread").hidden = true;
  document.querySelector(".layout").classList.remove("with-thread");
}

$("thread-close").addEventListener("click", () => closeThread());

function renderThread() {
  const t = state.thread;
  if (!t) return;
  const parent = state.messages.get(t.parentId);
  const replies = [...t.replies.values()].sort((a, b) => a.seq - b.seq);
  const node = (m) => {
    const n = render(m);
    n.classList.add("reply-msg");
    return n;
  };
  $("thread-list").replaceChildren(
    ...(parent ? [Object.assign(render({ ...parent, thread: null, seq: 0 }), { className: "msg parent" })] : []),
    ...replies.map(node),
  );
  $("thread-list").scrollTop = $("thread-list").scrollHeight;
}

/** A shown message by id: in the room, or a reply in the open thread. */
const known = (id) => state.messages.get(id) || (state.thread && state.thread.replies.get(id));

function togglePicker(m) {
  state.picking = state.picking === m.id ? null : m.id;
  upsert(known(m.id));
}

const reactionPath = (m, emoji) =>
  `/rooms/${encodeURIComponent(state.room.room_id)}/messages/${encodeURIComponent(m.id)}/reactions/${encodeURIComponent(emoji)}`;

/** Adds (`add`) or takes back the caller's reaction; the answer has the message's reactions. */
async function react(m, emoji, add) {
  state.picking = null;
  try {
    const change = await api(add ? "PUT" : "DELETE", reactionPath(m, emoji));
    const now = known(m.id);
    if (now) upsert({ ...now, reactions: change.reactions });
  } catch (e) {
    $("room-error").textContent = e.message;
  }
}

/** Lists everyone who reacted, per emoji, under the message. */
async function showWho(m) {
  try {
    const parts = [];
    for (const r of m.reactions || []) {
      const page = await api("GET", reactionPath(m, r.emoji) + "?limit=100");
      parts.push(`${r.emoji} ${page.users.map((u) => u.user_id).join(", ")}`);
    }
    const now = known(m.id);
    if (now) upsert({ ...now, who: parts.join(" \u00B7 ") });
  } catch (e) {
    $("room-error").textContent = e.message;
  }
}

/** A `reaction_added` / `reaction_removed` frame: the emoji's count, and whether it is mine. */
function applyReaction(data, added) {
  const m = known(data.message_id);
  if (!m) return;
  const reactions = (m.reactions || []).map((r) => ({ ...r, user_ids: [...r.user_ids] }));
  let r = reactions.find((x) => x.emoji === data.emoji);
  if (!r) {
    r = { emoji: data.emoji, count: 0, user_ids: [], me: false };
    reactions.push(r);
  }
  r.count = data.count;
  if (data.user_id === state.auth.user) r.me = added;
  if (added && !r.user_ids.includes(data.user_id) && r.user_ids.length < 3) r.user_ids.push(data.user_id);
  if (!added) r.user_ids = r.user_ids.filter((u) => u !== data.user_id);
  upsert({ ...m, reactions: reactions.filter((x) => x.count > 0), who: "" });
}

async function togglePin(m) {
  const path = `/rooms/${encodeURIComponent(state.room.room_id)}/pins/${encodeURIComponent(m.id)}`;
  try {
    const message = await api(m.pinned_at ? "DELETE" : "PUT", path);
    const now = known(m.id);
    if (now) upsert({ ...now, pinned_at: message.pinned_at, pinned_by: message.pinned_by });
    await loadPins();
  } catch (e) {
    $("room-error").textContent = e.message;
  }
}

/** The open room's pinned messages, into the panel. */
async function loadPins() {
  const room = state.room;
  if (!room) return;
  let list;
  try {
    list = await api("GET", `/rooms/${encodeURIComponent(room.room_id)}/pins`);
  } catch (e) {
    $("room-error").textContent = e.message;
    return;
  }
  if (state.room !== room) return;
  state.pins = list.pins;
  renderPins();
}

function renderPins() {
  $("pins-toggle").textContent = `\u{1F4CC} Pinned (${state.pins.length})`;
  $("pins-list").replaceChildren(
    ...state.pins.map((p) =>
      el(
        "li",
        { class: "pin-item", dataset: { id: p.message_id } },
        el("span", { class: "sender" }, p.sender_name || p.sender_id),
        el("span", { class: "content" }, p.content),
        el("span", { class: "time" }, `pinned by ${p.pinned_by}`),
      ),
    ),
  );
}

$("pins-toggle").addEventListener("click", () => {
  $("pins-list").hidden = !$("pins-list").hidden;
});

/** A thread reply from a frame or a page: shown in the open thread if it is its. */
function upsertReply(m) {
  state.newest = Math.max(state.newest, m.seq || 0);
  const t = state.thread;
  if (!t || t.parentId !== m.parent_id) return;
  t.replies.set(m.id, { ...t.replies.get(m.id), ...m });
  renderThread();
}

/** A thread's new summary: its parent shows it (in the room and the open thread). */
function threadUpdated(data) {
  const m = state.messages.get(data.message_id);
  if (!m) return;
  const next = { ...m, thread: data.thread || null };
  state.messages.set(m.id, next);
  const current = state.elements.get(m.id);
  if (current) {
    const node = render(next);
    current.replaceWith(node);
    state.elements.set(m.id, node);
  }
  if (state.thread && state.thread.parentId === m.id) renderThread();
}

$("thread-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const content = $("thread-composer").value;
  if (!content.trim() || !state.thread) return;
  $("thread-composer").value = "";
  $("thread-mention-menu").hidden = true;
  const data = { content, local_id: newLocalId(), parent_id: state.thread.parentId };
  const mentions = mentionsIn(content);
  if (mentions.length) data.mentions = mentions;
  if (!send("send_message", data)) $("room-error").textContent = "Not connected: the reply was not sent.";
});

// ---- attachments ------------------------------------------------------------------

/**
 * One file of a message: an image as a thumbnail, anything else as a link with its
 * name and size. Both are fetched with the page's credentials (a bare link would be
 * refused with 401); a click saves the file under its name.
 */
function renderFile(m, a, index) {
  const label = `${a.filename} (${bytes(a.size)})`;
  const known = state.files.get(a.url);
  const ready = known && known.url;
  // The link points at the object URL once it is fetched; until then a click fetches
  // it first and then follows it.
  const link = el("a", { class: "file", href: ready || "#", download: ready ? a.filename : null, title: a.mime_type });
  link.addEventListener("click", async (ev) => {
    if (link.getAttribute("href") !== "#") return;
    ev.preventDefault();
    try {
      link.href = await fileUrl(m, index);
      link.download = a.filename;
      link.click();
    } catch (e) {
      $("room-error").textContent = e.message;
    }
  });
  if (!a.mime_type.startsWith("image/")) {
    link.append(label);
    return link;
  }
  const img = el("img", { class: "thumb", alt: a.filename, title: label, src: ready || null });
  if (!ready) {
    fileUrl(m, index)
      .then((u) => {
        img.src = u;
        link.href = u;
        link.download = a.filename;
      })
      .catch((e) => (img.alt = `${a.filename}: ${e.message}`));
  }
  link.append(img);
  return link;
}

/**
 * The object URL of file `index` of `m`, fetched once per signed link. A link that has
 * expired (403) is fetched again from a fresh copy of the message.
 */
function fileUrl(m, index) {
  const link = m.attachments[index].url;
  const known = state.files.get(link);
  if (known) return known.blob;
  const entry = { blob: null, url: null };
  entry.blob = download(link, headers())
    .catch(async (e) => {
      if (e.status !== 403) throw e;
      const room = encodeURIComponent(state.room.room_id);
      const [fresh] = await api("GET", `/rooms/${room}/messages?after_seq=${m.seq - 1}&limit=1`);
      const again = fresh && fresh.attachments && fresh.attachments[index];
      if (!again || again.url === link) throw e;
      return download(again.url, headers());
    })
    .then((blob) => (entry.url = URL.createObjectURL(blob)));
  // A failure is not kept: the next render tries again.
  entry.blob.catch(() => state.files.get(link) === entry && state.files.delete(link));
  state.files.set(link, entry);
  return entry.blob;
}

/** Lets go of the files of the room being left. */
function forgetFiles() {
  for (const f of state.files.values()) if (f.url) URL.revokeObjectURL(f.url);
  state.files.clear();
}

// The file picker: sends the file at once, with what is in the composer as caption.
$("attach").addEventListener("change", async () => {
  const input = $("attach");
  const file = input.files && input.files[0];
  input.value = ""; // the same file can be picked again
  if (!file || !state.room) return;
  const caption = $("composer").value.trim();
  const form = new FormData();
  if (caption) form.append("content", caption);
  form.append("file", file, file.name);
  $("room-error").textContent = "";
  $("upload-status").textContent = `sending ${file.name} (${bytes(file.size)})\u2026`;
  try {
    // The message comes back as a `message` frame like any other.
    await upload(`/api/chat/${encodeURIComponent(state.room.room_id)}/messages/file`, headers(), form);
    if (caption && $("composer").value.trim() === caption) {
      $("composer").value = "";
      stopTyping();
    }
  } catch (e) {
    $("room-error").textContent = e.message;
  } finally {
    $("upload-status").textContent = "";
  }
});

function startEdit(m) {
  const node = state.elements.get(m.id);
  const input = el("input", { class: "edit-input", value: m.content });
  const save = async (ev) => {
    ev.preventDefault();
    try {
      const updated = await api("PATCH", `/rooms/${encodeURIComponent(state.room.room_id)}/messages/${m.id}`, {
        content: input.value,
      });
      upsert(updated);
    } catch (e) {
      $("room-error").textContent = e.message;
    }
  };
  node.querySelector(".content").replaceWith(
    el("form", { class: "edit-form", onsubmit: save }, input, el("button", { class: "save", type: "submit" }, "save")),
  );
  input.focus();
}

async function remove(m) {
  try {
    upsert(await api("DELETE", `/rooms/${encodeURIComponent(state.room.room_id)}/messages/${m.id}`));
  } catch (e) {
    $("room-error").textContent = e.message;
  }
}

/** Raises the ticks of my messages up to `seq` (or those named) to `status`. */
function tick(status, seq, ids) {
  for (const m of state.messages.values()) {
    if (m.sender_id !== state.auth.user) continue;
    if (!(m.seq <= seq || (ids && ids.includes(m.id)))) continue;
    const next = higher(m.status, status);
    if (next !== m.status) upsert({ ...m, status: next });
  }
}

/** Sends a `read` up to the newest message shown (while the page is visible); true if sent. */
function markRead() {
  if (document.visibilityState === "hidden" || state.newest <= state.readSent) return false;
  if (!send("read", { seq: state.newest })) return false;
  state.readSent = state.newest;
  return true;
}

/** Resolves when a `cursor` frame (the answer to `read`) says read up to `seq`, or after `ms`. */
function cursorAnswer(seq, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    state.onCursor = (cursor) => {
      if (cursor.read_seq < seq) return;
      clearTimeout(timer);
      state.onCursor = null;
      resolve();
    };
  });
}
document.addEventListener("visibilitychange", markRead);

// ---- presence and typing ------------------------------------------------------------

function renderOnline() {
  const more = state.onlineMore ? [el("span", { class: "more" }, `and ${state.onlineMore} more online`)] : [];
  $("online").replaceChildren(
    ...[...state.online].sort().map((u) => el("span", { class: "user", dataset: { user: u } }, u)),
    ...more,
  );
}

function renderTyping() {
  const names = [...state.typers.values()];
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing\u2026` : "";
}

$("composer").addEventListener("input", () => {
  const now = Date.now();
  if (now - state.typingSentAt > 2000 && send("typing", { is_typing: true })) state.typingSentAt = now;
  clearTimeout(state.typingStop);
  state.typingStop = setTimeout(stopTyping, 3000);
});

function stopTyping() {
  clearTimeout(state.typingStop);
  if (state.typingSentAt) send("typing", { is_typing: false });
  state.typingSentAt = 0;
}

// ---- sending --------------------------------------------------------------------------

const newLocalId = () =>
  crypto.randomUUID ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;

$("composer-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const content = $("composer").value;
  if (!content.trim() || !state.room) return;
  $("composer").value = "";
  stopTyping();
  const localId = newLocalId();
  state.pending.set(localId, content);
  const node = el(
    "div",
    { class: "msg mine pending", dataset: { local: localId } },
    el("span", { class: "sender" }, state.auth.user),
    el("span", { class: "content" }, content),
    el("span", { class: "ticks", dataset: { status: "pending" }, title: "waiting for the connection" }, TICK.pending),
  );
  state.elements.set(localId, node);
  $("message-list").append(node);
  scrollToEnd();
  // Sent now if the socket is open, else when it is back (the same local_id: a resend
  // of something stored returns the stored message, nothing twice).
  $("mention-menu").hidden = true;
  const mentions = mentionsIn(content);
  state.pending.set(localId, mentions.length ? { content, mentions } : content);
  send("send_message", mentions.length ? { content, local_id: localId, mentions } : { content, local_id: localId });
});

function failed(localId, message) {
  const node = state.elements.get(localId);
  state.pending.delete(localId);
  if (!node) return;
  node.classList.add("failed");
  const t = node.querySelector(".ticks");
  t.textContent = TICK.failed;
  t.dataset.status = "failed";
  t.title = message;
  $("room-error").textContent = message;
}

// ---- the socket ---------------------------------------------------------------------

function send(type, data) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify({ type, data }));
  return true;
}

function setStatus(kind, text) {
  const s = $("conn-status");
  s.dataset.state = kind;
  s.textContent = text;
}

function socketUrl() {
  const a = state.auth;
  const q = new URLSearchParams(a.token ? { token: a.token } : { token: a.apiKey, user_id: a.user });
  q.set("user_name", a.user);
  if (state.newest > 0) q.set("last_seq", String(state.newest));
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/ws/${encodeURIComponent(state.room.room_id)}?${q}`;
}

function connect() {
  clearTimeout(state.retryTimer);
  if (!state.room || state.ws) return;
  if (state.offline) return setStatus("offline", "offline: waiting for the network");
  const gen = ++state.wsGen;
  setStatus("connecting", state.retries ? "reconnecting\u2026" : "connecting\u2026");
  const ws = new WebSocket(socketUrl());
  state.ws = ws;
  ws.onopen = async () => {
    if (gen !== state.wsGen) return;
    state.retries = 0;
    setStatus("online", "online");
    // Before resending what was written offline, show (and mark read) what others
    // wrote meanwhile: a send moves the sender's read cursor past everything before
    // it without telling those senders, so reading first is what gives them their
    // read ticks. (The resume frames bring the same messages again; shown once.)
    if (state.pending.size) {
      try {
        const room = encodeURIComponent(state.room.room_id);
        const missed = await api("GET", `/rooms/${room}/messages?after_seq=${state.newest}&limit=100`);
        if (gen !== state.wsGen) return;
        for (const m of missed) upsert(m);
      } catch (e) {
        // The resume brings them anyway; only the order of the ticks is lost.
      }
    }
    state.readSent = Math.min(state.readSent, state.newest - 1);
    // The server may store a send before it applies a read sent just ahead of it, so
    // the resends wait for the read's answer (`cursor`), or 5 s at most.
    const answered = state.pending.size ? cursorAnswer(state.newest, 5000) : null;
    if (markRead() && answered) await answered;
    if (gen !== state.wsGen) return;
    for (const [localId, p] of state.pending) {
      send("send_message", typeof p === "string" ? { content: p, local_id: localId } : { ...p, local_id: localId });
    }
  };
  ws.onmessage = (ev) => {
    if (gen !== state.wsGen) return;
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch (e) {
      return;
    }
    onFrame(frame);
  };
  ws.onclose = (ev) => {
    if (gen !== state.wsGen) return;
    state.ws = null;
    state.online.clear();
    state.onlineMore = 0;
    state.typers.clear();
    renderOnline();
    renderTyping();
    if (ev.code === 4001) return signOut("Your sign-in expired; sign in again.");
    if (ev.code === 4002 || ev.code === 4003) {
      setStatus("offline", "closed");
      $("room-error").textContent = ev.code === 4002 ? "This room does not exist." : "You are not a member of this room.";
      return;
    }
    retryLater(ev.code === 4004 ? 5000 : null);
  };
}

function retryLater(delay) {
  if (state.offline) return setStatus("offline", "offline: waiting for the network");
  const wait = delay ?? Math.min(500 * 2 ** state.retries, 8000);
  state.retries += 1;
  setStatus("reconnecting", `reconnecting in ${Math.ceil(wait / 1000)} s`);
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(connect, wait);
}

function closeSocket() {
  clearTimeout(state.retryTimer);
  state.wsGen += 1;
  if (state.ws) state.ws.close(1000);
  state.ws = null;
  state.retries = 0;
  setStatus("idle", state.room ? "closed" : "no room open");
}

// The network went away: stop using the socket now (the browser may not notice for a
// while) and come back, resuming after the last seq shown, when it returns.
window.addEventListener("offline", () => {
  state.offline = true;
  if (!state.room) return;
  state.wsGen += 1;
  if (state.ws) state.ws.close(1000);
  state.ws = null;
  clearTimeout(state.retryTimer);
  setStatus("offline", "offline: waiting for the network");
});
window.addEventListener("online", () => {
  state.offline = false;
  state.retries = 0;
  connect();
});

function onFrame({ type, data, room_id: roomId }) {
  const mine = (u) => u === state.auth.user;
  switch (type) {
    case "connection_status":
      state.online = new Set(data.online_users || []);
      // A big room greets with a count, not the list (and announces no arrivals).
      state.onlineMore =
        data.online_users_complete === false ? Math.max(0, (data.total_online || 0) - state.online.size) : 0;
      renderOnline();
      break;
    case "user_joined":
      state.online.add(data.user_id);
      renderOnline();
      break;
    case "user_left":
      state.online.delete(data.user_id);
      renderOnline();
      break;
    case "typing":
      if (data.is_typing) state.typers.set(data.user_id, data.user_name || data.user_id);
      else state.typers.delete(data.user_id);
      renderTyping();
      break;
    case "message":
    case "message_sent": {
      if (roomId && roomId !== state.room.room_id) break;
      const atEnd = $("messages").scrollHeight - $("messages").scrollTop - $("messages").clientHeight < 40;
      upsert(data);
      if (!mine(data.sender_id) && state.typers.delete(data.sender_id)) renderTyping();
      if (atEnd || mine(data.sender_id)) scrollToEnd();
      markRead();
      refreshRooms();
      break;
    }
    case "thread_updated":
      threadUpdated(data);
      break;
    case "message_updated":
    case "message_deleted": {
      const m = state.messages.get(data.id) || (state.thread && state.thread.replies.get(data.id));
      if (m) upsert({ ...m, ...data, content: type === "message_deleted" ? "" : data.content });
      refreshRooms();
      break;
    }
    case "delivered":
    case "read":
      if (!mine(data.user_id)) tick(type, data.seq);
      break;
    case "reaction_added":
    case "reaction_removed":
      if (roomId && roomId !== state.room.room_id) break;
      applyReaction(data, type === "reaction_added");
      break;
    case "message_pinned":
    case "message_unpinned": {
      if (roomId && roomId !== state.room.room_id) break;
      const m = known(data.id);
      const pinned = type === "message_pinned";
      if (m) upsert({ ...m, pinned_at: pinned ? data.pinned_at : null, pinned_by: pinned ? data.pinned_by : null });
      loadPins();
      break;
    }
    case "message_status":
      if (data.room_id === state.room.room_id && !mine(data.user_id)) tick(data.status, data.up_to_seq, data.message_ids);
      else refreshRooms();
      break;
    case "cursor":
      if (state.onCursor) state.onCursor(data);
      break;
    case "moderation":
      moderationNotice(data);
      break;
    case "error":
      if (data.local_id && state.elements.has(data.local_id)) failed(data.local_id, data.message);
      else $("room-error").textContent = data.message;
      break;
    case "reconnect":
      // The gateway is going away: come back (elsewhere) after the delay it asks for.
      state.wsGen += 1;
      if (state.ws) state.ws.close(1000);
      state.ws = null;
      retryLater(data.delay_ms || 500);
      break;
    default:
      break;
  }
}

// ---- start ----------------------------------------------------------------------------

setInterval(refreshRooms, 5000);
const saved = sessionStorage.getItem("chat.auth");
if (saved) {
  signIn(JSON.parse(saved)).catch((e) => signOut(e instanceof ApiError ? e.message : ""));
}
