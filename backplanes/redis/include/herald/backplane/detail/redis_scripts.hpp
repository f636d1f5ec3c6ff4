// herald — detail: the Lua scripts the Redis backplane runs. Each runs atomically in Redis,
// so that every server agrees on a channel's epoch and on the order of its messages.
#pragma once

namespace herald::detail::redis_scripts {

// A channel's keys: KEYS[1] is a hash {epoch, head}, KEYS[2] the stream of its history, one
// entry {o: offset, d: data} per message. An absent hash means the stream is lost (Redis
// restarted without persistence, keys evicted or expired): the caller's fresh epoch starts a
// new stream and any leftover entries go.

/// KEYS: meta, stream. ARGV: fresh epoch, data, max messages, max age (ms), key ttl (ms),
/// pub/sub channel. Orders one message: INCR of the head, XADD (trimmed by count and age),
/// PUBLISH of "<epoch> <offset> <data>". Returns {epoch, offset}.
inline constexpr const char* publish = R"lua(
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'head', 0)
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

/// KEYS: meta, stream. ARGV: fresh epoch, key ttl (ms, renewed), and to resume: since epoch,
/// since offset, max messages, max age (ms). Returns {epoch, head, recovered (0/1), offset1, data1,
/// ...}: the messages after `since`, oldest first, only when all of them are still held (the
/// count and age bounds are applied exactly here; XADD trims approximately).
inline constexpr const char* fetch = R"lua(
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local head = 0
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'head', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  head = tonumber(redis.call('HGET', KEYS[1], 'head'))
  redis.call('PEXPIRE', KEYS[1], ARGV[2])  -- followed: keep the epoch alive
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
if #ARGV < 6 then return {epoch, head, 1} end
if ARGV[3] ~= epoch then return {epoch, head, 0} end
local since = tonumber(ARGV[4])
if since >= head then
  if since == head then return {epoch, head, 1} end
  return {epoch, head, 0}
end
local n = head - since
if n > tonumber(ARGV[5]) then return {epoch, head, 0} end
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', n)
if #entries < n then return {epoch, head, 0} end
local oldest = entries[n]
if tonumber(oldest[2][2]) ~= since + 1 then return {epoch, head, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - tonumber(string.match(oldest[1], '^(%d+)')) > tonumber(ARGV[6]) then return {epoch, head, 0} end
local out = {epoch, head, 1}
for i = n, 1, -1 do
  out[#out + 1] = tonumber(entries[i][2][2])
  out[#out + 1] = entries[i][2][4]
end
return out
)lua";

} // namespace herald::detail::redis_scripts
