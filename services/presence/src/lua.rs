//! The Lua scripts that change presence state. Each change runs as one script, so
//! concurrent replicas never both announce the same arrival or departure, and a crash
//! between two steps cannot leave a socket half closed.
//!
//! Every script takes its arguments as `ARGV` (no `KEYS`): it builds the keys of the
//! layout described in `redis_state/mod.rs` from the key prefix and the ids, because the
//! keys a lease expiry touches are only known once the gateway's socket index has
//! been read. That needs a standalone Redis (not a cluster), which is what presence
//! runs on. Times are milliseconds since the Unix epoch; numbers go back to Redis
//! through `num`, because Lua's own conversion keeps only 14 digits.

/// Helpers shared by the scripts. `ARGV[1]` is always the key prefix `<p>:pr:`.
const LIB: &str = r#"
local P = ARGV[1]
local SEP = '\31'

local function num(x) return string.format('%.0f', x) end
local function key(kind, t, r) return P .. kind .. ':' .. t .. ':' .. r end

-- users hash: user -> "<open sockets>\31<interval start>\31<last close>"
local function get_user(users, u)
  local v = redis.call('HGET', users, u)
  if not v then return nil end
  local open, from, last = string.match(v, '^([^\31]*)\31([^\31]*)\31([^\31]*)$')
  return {open = tonumber(open), from = from, last = tonumber(last)}
end
local function put_user(users, u, st)
  redis.call('HSET', users, u, num(st.open) .. SEP .. st.from .. SEP .. num(st.last))
end

-- Something in room (t, r) is due at `at` (a closing socket's grace end, a typing
-- expiry): keep the room's entry in the due queue at the earliest such moment.
local function mark_due(t, r, at)
  redis.call('ZADD', P .. 'due', 'LT', num(at), t .. SEP .. r)
end

-- Drops intervals that ended before the retained history; an idle room's history
-- key expires once nothing in it is still open.
local function prune(h, now, keep)
  redis.call('ZREMRANGEBYSCORE', h, '-inf', '(' .. num(now - keep))
  if redis.call('ZCOUNT', h, 'inf', 'inf') == 0 then
    redis.call('PEXPIRE', h, num(keep))
  else
    redis.call('PERSIST', h)
  end
end

-- The user's interval ends when their last socket closed; they are no longer present.
local function leave(t, r, u, st, now, keep)
  local h = key('hist', t, r)
  redis.call('ZADD', h, 'XX', num(st.last), u .. SEP .. st.from)
  prune(h, now, keep)
  redis.call('HDEL', key('users', t, r), u)
end

-- Closes an open socket at `at` (<= now). Returns 1 if it was open. Also ends the
-- user's typing: a typer whose connection dies is shown as stopped.
local function close_socket(t, r, u, c, at, now, grace)
  local conns = key('conns', t, r)
  local m = u .. SEP .. c
  if redis.call('ZSCORE', conns, m) ~= 'inf' then return 0 end
  redis.call('ZADD', conns, num(at), m)
  redis.call('ZADD', P .. 'tenant:' .. t, 'XX', num(at), u .. SEP .. r .. SEP .. c)
  local gws = key('gws', t, r)
  local gw = redis.call('HGET', gws, m)
  if gw then
    redis.call('HDEL', gws, m)
    redis.call('SREM', P .. 'gw:' .. gw, t .. SEP .. r .. SEP .. m)
  end
  local users = key('users', t, r)
  local st = get_user(users, u)
  if st then
    st.open = st.open - 1
    if at > st.last then st.last = at end
    put_user(users, u, st)
  end
  local due = at + grace
  local typing = key('typing', t, r)
  if redis.call('ZSCORE', typing, u) then
    redis.call('ZADD', typing, num(now), u)
    if now < due then due = now end
  end
  mark_due(t, r, due)
  return 1
end

-- Registers socket c of user u in room (t, r) on gateway gw at `now`. Returns the
-- user's first (1 if they had no socket in the room, counting closing ones within
-- the grace) and the end of their previous interval ('' if none ended).
local function connect_socket(t, r, u, c, gw, name, now, ttl, grace, keep)
  -- A gateway registering a socket is alive: give it a lease if it has none (or one
  -- that ran out and was not yet expired), so the socket is never closed before it opened.
  local lease = redis.call('ZSCORE', P .. 'leases', gw)
  if not lease or tonumber(lease) < now then redis.call('ZADD', P .. 'leases', num(now + ttl), gw) end
  redis.call('SET', P .. 'since', num(now), 'NX')

  local conns = key('conns', t, r)
  local users = key('users', t, r)
  local m = u .. SEP .. c
  local ended = ''
  local st = get_user(users, u)
  -- Their last socket closed longer than the grace ago: they left, even if the sweeper
  -- has not got to it yet. The old interval ends, a new one starts.
  if st and st.open == 0 and st.last + grace <= now then
    leave(t, r, u, st, now, keep)
    ended = num(st.last)
    st = nil
  end
  local first = 0
  if not st then
    first = 1
    st = {open = 0, from = num(now), last = 0}
    local h = key('hist', t, r)
    redis.call('ZADD', h, 'inf', u .. SEP .. st.from)
    prune(h, now, keep)
  end
  local gws = key('gws', t, r)
  if redis.call('ZSCORE', conns, m) ~= 'inf' then
    st.open = st.open + 1
  else
    local old = redis.call('HGET', gws, m)
    if old and old ~= gw then redis.call('SREM', P .. 'gw:' .. old, t .. SEP .. r .. SEP .. m) end
  end
  put_user(users, u, st)
  redis.call('ZADD', conns, 'inf', m)
  redis.call('HSET', gws, m, gw)
  redis.call('SADD', P .. 'gw:' .. gw, t .. SEP .. r .. SEP .. m)
  redis.call('ZADD', P .. 'tenant:' .. t, 'inf', u .. SEP .. r .. SEP .. c)
  if name ~= '' then redis.call('HSET', key('names', t, r), u, name) end
  return first, ended
end
"#;

/// `connect`: ARGV = prefix, tenant, room, user, conn, gateway, name ('' for none),
/// now, default lease ms, grace ms, history ms, big room (users).
/// Returns `{first (0/1), previous interval's end ('' if none), sockets online, users
/// in the room}`; the sockets are listed only while the room has at most `big room`
/// users (a big room's list is not sent with every join: that would be O(n²) in all).
const CONNECT: &str = r#"
local t, r, u, c, gw, name = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local now, ttl, grace, keep = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local first, ended = connect_socket(t, r, u, c, gw, name, now, ttl, grace, keep)
local users = redis.call('HLEN', key('users', t, r))
local live = {}
if users <= tonumber(ARGV[12]) then
  live = redis.call('ZRANGEBYSCORE', key('conns', t, r), '(' .. num(now - grace), 'inf')
end
return {first, ended, live, users}
"#;

/// `connect_many`: ARGV = prefix, now, default lease ms, grace ms, history ms, then six
/// per socket: tenant, room, user, conn, gateway, name ('' for none). A gateway
/// announcing its sockets again in batches (one call per batch, not per socket).
/// Returns, per socket, `{first (0/1), previous interval's end ('' if none), users in
/// the room}`.
const CONNECT_MANY: &str = r#"
local now, ttl, grace, keep = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
local i = 6
while i + 5 <= #ARGV do
  local t, r = ARGV[i], ARGV[i + 1]
  local first, ended = connect_socket(t, r, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], now, ttl, grace, keep)
  out[#out + 1] = {first, ended, redis.call('HLEN', key('users', t, r))}
  i = i + 6
end
return out
"#;

/// `disconnect`: ARGV = prefix, tenant, room, user, conn, now, grace ms. Returns 1 if
/// the socket was open.
const DISCONNECT: &str = r#"
local now = tonumber(ARGV[6])
return close_socket(ARGV[2], ARGV[3], ARGV[4], ARGV[5], now, now, tonumber(ARGV[7]))
"#;

/// `expire_lease`: ARGV = prefix, now, grace ms, most sockets to close. Closes up to
/// that many sockets of one gateway whose lease ran out, at the moment it ran out,
/// and drops the lease once the gateway has no socket left.
/// Returns `{}` when no lease ran out, else `{gateway, sockets closed}`.
const EXPIRE_LEASE: &str = r#"
local now, grace = tonumber(ARGV[2]), tonumber(ARGV[3])
local e = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', num(now), 'WITHSCORES', 'LIMIT', 0, 1)
if #e == 0 then return {} end
local gw, at = e[1], tonumber(e[2])
local set = P .. 'gw:' .. gw
local closed = 0
for _, s in ipairs(redis.call('SPOP', set, ARGV[4])) do
  local t, r, u, c = string.match(s, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31(.*)$')
  if c then closed = closed + close_socket(t, r, u, c, at, now, grace) end
end
if redis.call('EXISTS', set) == 0 then redis.call('ZREM', P .. 'leases', gw) end
return {gw, closed}
"#;

/// `sweep`: ARGV = prefix, tenant, room, now, grace ms, history ms, most sockets.
/// Removes up to that many sockets whose grace is over (users whose last socket that
/// was leave), and typing that expired; then files the room under its next due moment
/// (at once if sockets remain to be removed; or drops it from the queue).
/// Returns `{left users, their names, stopped typers, their names, users still in the
/// room}`.
const SWEEP: &str = r#"
local t, r = ARGV[2], ARGV[3]
local now, grace, keep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local conns = key('conns', t, r)
local cutoff = num(now - grace)
local expired = redis.call('ZRANGEBYSCORE', conns, '-inf', cutoff, 'LIMIT', 0, ARGV[7])
local left = {}
if #expired > 0 then
  local users = key('users', t, r)
  local seen = {}
  for _, m in ipairs(expired) do
    redis.call('ZREM', conns, m)
    local u, c = string.match(m, '^([^\31]*)\31(.*)$')
    redis.call('ZREM', P .. 'tenant:' .. t, u .. SEP .. r .. SEP .. c)
    if not seen[u] then
      seen[u] = true
      local st = get_user(users, u)
      if st and st.open == 0 and st.last + grace <= now then
        leave(t, r, u, st, now, keep)
        left[#left + 1] = u
      end
    end
  end
end
local typing = key('typing', t, r)
local stopped = redis.call('ZRANGEBYSCORE', typing, '-inf', num(now))
if #stopped > 0 then redis.call('ZREMRANGEBYSCORE', typing, '-inf', num(now)) end

local names = key('names', t, r)
-- One HGET each (not HMGET with unpack, which fails past Lua's stack size).
local left_names, stopped_names = {}, {}
for i, u in ipairs(left) do left_names[i] = redis.call('HGET', names, u) end
for i, u in ipairs(stopped) do stopped_names[i] = redis.call('HGET', names, u) end
for _, u in ipairs(left) do
  if not redis.call('ZSCORE', typing, u) then redis.call('HDEL', names, u) end
end
if redis.call('EXISTS', conns) == 0 and redis.call('EXISTS', typing) == 0 then redis.call('DEL', names) end

local next = nil
local c = redis.call('ZRANGEBYSCORE', conns, '-inf', '(inf', 'WITHSCORES', 'LIMIT', 0, 1)
if #c > 0 then next = tonumber(c[2]) + grace end
local ty = redis.call('ZRANGE', typing, 0, 0, 'WITHSCORES')
if #ty > 0 and (not next or tonumber(ty[2]) < next) then next = tonumber(ty[2]) end
if next then
  redis.call('ZADD', P .. 'due', num(next), t .. SEP .. r)
else
  redis.call('ZREM', P .. 'due', t .. SEP .. r)
end
return {left, left_names, stopped, stopped_names, redis.call('HLEN', key('users', t, r))}
"#;

/// `typing`: ARGV = prefix, tenant, room, user, name ('' for none), 1/0, now, ttl ms.
/// Returns 1 when the state changed (a start or renewal always does: clients use
/// renewals to keep the indicator on).
const TYPING: &str = r#"
local t, r, u, name = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local typing = key('typing', t, r)
if ARGV[6] == '1' then
  if name ~= '' then redis.call('HSET', key('names', t, r), u, name) end
  local at = tonumber(ARGV[7]) + tonumber(ARGV[8])
  redis.call('ZADD', typing, num(at), u)
  mark_due(t, r, at)
  return 1
end
return redis.call('ZREM', typing, u)
"#;

/// The scripts, each compiled once (Redis caches them by SHA).
pub struct Scripts {
    pub connect: redis::Script,
    pub connect_many: redis::Script,
    pub disconnect: redis::Script,
    pub expire_lease: redis::Script,
    pub sweep: redis::Script,
    pub typing: redis::Script,
}

impl Scripts {
    pub fn new() -> Self {
        let script = |body: &str| redis::Script::new(&format!("{LIB}{body}"));
        Self {
            connect: script(CONNECT),
            connect_many: script(CONNECT_MANY),
            disconnect: script(DISCONNECT),
            expire_lease: script(EXPIRE_LEASE),
            sweep: script(SWEEP),
            typing: script(TYPING),
        }
    }
}
