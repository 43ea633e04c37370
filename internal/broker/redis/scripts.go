package redis

import "github.com/redis/rueidis"

// publishScript stores a publication and publishes its frame in one atomic
// step. KEYS: stream, meta, result. ARGV: payload, history size (0 = no
// history), history TTL ms, meta TTL ms, epoch to create when absent,
// PUB/SUB channel, result TTL ms (0 = not idempotent).
// Returns {offset, epoch}.
var publishScript = rueidis.NewLuaScript(`
local stream, meta, result = KEYS[1], KEYS[2], KEYS[3]
if ARGV[7] ~= '0' then
  local prev = redis.call('hmget', result, 'o', 'e')
  if prev[1] then return {prev[1], prev[2]} end
end
local off, epoch = 0, ''
if ARGV[2] ~= '0' then
  epoch = redis.call('hget', meta, 'e')
  if not epoch then
    epoch = ARGV[5]
    redis.call('hset', meta, 'e', epoch)
  end
  off = redis.call('hincrby', meta, 's', 1)
  redis.call('pexpire', meta, ARGV[4])
  if off == 1 then redis.call('del', stream) end
  redis.call('xadd', stream, 'maxlen', ARGV[2], off .. '-0', 'd', ARGV[1])
  redis.call('pexpire', stream, ARGV[3])
end
redis.call('publish', ARGV[6], '1p' .. off .. ':' .. epoch .. ':' .. ARGV[1])
if ARGV[7] ~= '0' then
  redis.call('hset', result, 'o', off, 'e', epoch)
  redis.call('pexpire', result, ARGV[7])
end
return {tostring(off), epoch}
`)

// historyScript reads a stream's position and, when asked, a range of it,
// creating the epoch when absent. KEYS: stream, meta. ARGV: epoch to
// create, meta TTL ms, with entries (0/1), since offset (” = none),
// reverse (0/1), limit (-1 = all).
// Returns {top, epoch, entries}.
var historyScript = rueidis.NewLuaScript(`
local stream, meta = KEYS[1], KEYS[2]
local epoch = redis.call('hget', meta, 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('hset', meta, 'e', epoch)
end
redis.call('pexpire', meta, ARGV[2])
local top = redis.call('hget', meta, 's') or '0'
if ARGV[3] == '0' then return {top, epoch, {}} end
local lo, hi = '-', '+'
if ARGV[5] == '1' then
  if ARGV[4] ~= '' then
    local s = tonumber(ARGV[4])
    if s <= 1 then return {top, epoch, {}} end
    hi = string.format('%d-0', s - 1)
  end
elseif ARGV[4] ~= '' then
  lo = string.format('%d-0', tonumber(ARGV[4]) + 1)
end
local entries
if ARGV[5] == '1' then
  if ARGV[6] == '-1' then entries = redis.call('xrevrange', stream, hi, lo)
  else entries = redis.call('xrevrange', stream, hi, lo, 'count', ARGV[6]) end
else
  if ARGV[6] == '-1' then entries = redis.call('xrange', stream, lo, hi)
  else entries = redis.call('xrange', stream, lo, hi, 'count', ARGV[6]) end
end
return {top, epoch, entries}
`)

// addPresenceScript: KEYS data hash, expiry zset. ARGV client ID, info,
// expiry (unix ms), key TTL ms.
var addPresenceScript = rueidis.NewLuaScript(`
redis.call('zadd', KEYS[2], ARGV[3], ARGV[1])
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('pexpire', KEYS[1], ARGV[4])
redis.call('pexpire', KEYS[2], ARGV[4])
return 1
`)

// remPresenceScript: KEYS data hash, expiry zset. ARGV client ID.
var remPresenceScript = rueidis.NewLuaScript(`
redis.call('hdel', KEYS[1], ARGV[1])
redis.call('zrem', KEYS[2], ARGV[1])
return 1
`)

// presenceScript drops expired members, then returns the hash (field, value, …).
// KEYS data hash, expiry zset. ARGV now (unix ms).
var presenceScript = rueidis.NewLuaScript(`
local gone = redis.call('zrangebyscore', KEYS[2], '-inf', ARGV[1])
for i = 1, #gone, 1000 do
  redis.call('hdel', KEYS[1], unpack(gone, i, math.min(i + 999, #gone)))
end
if #gone > 0 then redis.call('zremrangebyscore', KEYS[2], '-inf', ARGV[1]) end
return redis.call('hgetall', KEYS[1])
`)
