// herald — detail: the Lua scripts the Redis backplane runs. Each runs atomically in Redis,
// so that every server agrees on a channel's epoch and on the order of its messages.
#pragma once

namespace herald::detail::redis_scripts {

// A channel's keys: KEYS[1] is a hash {epoch, head}, KEYS[2] the stream of its history, one
// entry {o: offset, d: data} per message. An absent hash means the stream is lost (Redis
// restarted without persistence, keys evicted or expired): the caller's fresh epoch starts a
// new stream and any leftover entries go.
//
// `term` names the primary that wrote the hash: the engine reads it at connection
// (`master_replid`, which a promoted replica changes). On another primary, the last writes of
// the old one may be missing (replication is asynchronous), so its offsets past what was
// replicated could be taken again by other messages: the first script there renames the
// stream (a fresh epoch) and keeps the old name in `prev`, valid up to the head replicated
// (`base`). A cursor in `prev` at or below `base` resumes; one past it gets recovered = 0.

/// KEYS: meta, stream. ARGV: fresh epoch, data, max messages, max age (ms), key ttl (ms),
/// pub/sub channel, term. Orders one message: INCR of the head, XADD (trimmed by count and
/// age), PUBLISH of "<epoch> <offset> <data>". Returns {epoch, offset}.
inline constexpr const char* publish = R"lua(
local epoch, head, term = unpack(redis.call('HMGET', KEYS[1], 'epoch', 'head', 'term'))
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'head', 0, 'term', ARGV[7])
elseif term ~= ARGV[7] then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'term', ARGV[7], 'prev', epoch, 'base', head)
  epoch = ARGV[1]
end
local offset = redis.call('HINCRBY', KEYS[1], 'head', 1)
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'o', offset, 'd', ARGV[2])
local ms = tonumber(string.match(id, '^(%d+)'))
local age = tonumber(ARGV[4])
if ms > age then redis.call('XTRIM', KEYS[2], 'MINID', '~', ms - age) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[6], epoch .. ' ' .. string.format('%d', offset) .. ' ' .. ARGV[2])
return {epoch, offset}
)lua";

/// KEYS: meta, stream. ARGV: fresh epoch, key ttl (ms, renewed), term, and to resume: since
/// epoch, since offset, max messages, max age (ms). Returns {epoch, head, recovered (0/1),
/// offset1, data1, ...}: the messages after `since`, oldest first, only when all of them are
/// still held (the count and age bounds are applied exactly here; XADD trims approximately).
/// A `since` in the epoch the current one continues (`prev`) is valid up to `base`.
inline constexpr const char* fetch = R"lua(
local epoch, head, term = unpack(redis.call('HMGET', KEYS[1], 'epoch', 'head', 'term'))
if not epoch then
  epoch = ARGV[1]
  head = 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'head', 0, 'term', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  head = tonumber(head)
  if term ~= ARGV[3] then
    redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'term', ARGV[3], 'prev', epoch, 'base', head)
    epoch = ARGV[1]
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])  -- followed: keep the epoch alive
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
if #ARGV < 7 then return {epoch, head, 1} end
local since = tonumber(ARGV[5])
if ARGV[4] ~= epoch then
  local prev, base = unpack(redis.call('HMGET', KEYS[1], 'prev', 'base'))
  if not prev or ARGV[4] ~= prev or since > tonumber(base) then return {epoch, head, 0} end
end
if since >= head then
  if since == head then return {epoch, head, 1} end
  return {epoch, head, 0}
end
local n = head - since
if n > tonumber(ARGV[6]) then return {epoch, head, 0} end
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', n)
if #entries < n then return {epoch, head, 0} end
local oldest = entries[n]
if tonumber(oldest[2][2]) ~= since + 1 then return {epoch, head, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - tonumber(string.match(oldest[1], '^(%d+)')) > tonumber(ARGV[7]) then return {epoch, head, 0} end
local out = {epoch, head, 1}
for i = n, 1, -1 do
  out[#out + 1] = tonumber(entries[i][2][2])
  out[#out + 1] = entries[i][2][4]
end
return out
)lua";

/// Presence (herald.v2). KEYS: entries, info, count. `entries` is a sorted set of
/// "<server>\n<user>", each scored by when it expires (ms, Redis's clock): a server renews
/// its own every presence_options::refresh_interval, so the entries of a server that died
/// expire after presence_options::ttl. `info` maps each member to its info, `count` to its
/// number of live entries (servers). A member joins when its first entry appears, and leaves
/// when its last goes (removed, or expired: every run first drops the expired entries); the
/// change is PUBLISHed on the channel's pub/sub channel, where messages go, as
/// "!j<len> <user><info>" or "!l<len> <user>" (an epoch never starts with '!'). Atomic: a
/// join or leave is announced once, by whichever server's run made it.
/// ARGV: pub/sub channel, ttl (ms), server, max members, op, then for `join` user, info
/// pairs (new entries, or renewals: a renewal of an entry that expired meanwhile joins
/// again), for `leave` users; `sweep` only drops expired entries; `read` returns the info
/// hash (user, info, ...). Keys expire 2 × ttl after the last run on them.
inline constexpr const char* presence = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local function gone(user)
  if redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
    redis.call('HDEL', KEYS[3], user)
    redis.call('HDEL', KEYS[2], user)
    redis.call('PUBLISH', ARGV[1], '!l' .. string.len(user) .. ' ' .. user)
  end
end
for _, e in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('ZREM', KEYS[1], e)
  gone(string.sub(e, string.find(e, '\n', 1, true) + 1))
end
local op = ARGV[5]
if op == 'join' then
  for i = 6, #ARGV - 1, 2 do
    local user, info = ARGV[i], ARGV[i + 1]
    local entry = ARGV[3] .. '\n' .. user
    if redis.call('ZSCORE', KEYS[1], entry) then
      redis.call('ZADD', KEYS[1], now + ttl, entry)
    elseif redis.call('HEXISTS', KEYS[3], user) == 1 or redis.call('HLEN', KEYS[3]) < tonumber(ARGV[4]) then
      redis.call('ZADD', KEYS[1], now + ttl, entry)
      if redis.call('HINCRBY', KEYS[3], user, 1) == 1 then
        redis.call('HSET', KEYS[2], user, info)
        redis.call('PUBLISH', ARGV[1], '!j' .. string.len(user) .. ' ' .. user .. info)
      end
    end
  end
elseif op == 'leave' then
  for i = 6, #ARGV do
    if redis.call('ZREM', KEYS[1], ARGV[3] .. '\n' .. ARGV[i]) == 1 then gone(ARGV[i]) end
  end
end
for k = 1, 3 do redis.call('PEXPIRE', KEYS[k], ttl * 2) end
if op == 'read' then return redis.call('HGETALL', KEYS[2]) end
return 0
)lua";

} // namespace herald::detail::redis_scripts
