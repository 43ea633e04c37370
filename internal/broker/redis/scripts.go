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

// Presence keys: a data hash (client ID → encoded info), an expiry zset
// (client ID → unix ms) and a claim-key hash (ClaimPresence) with three
// kinds of fields: "k:" key → the client ID holding it, "c:" client ID →
// its key, "t:" client ID → the token of the write of its entry (a value
// unique to one AddPresence or ClaimPresence of one process, kept by its
// refreshes), so that a conditional write or removal tells this process's
// write from another's exactly. Every write sets the three keys' TTL
// together, so the key hash lives as long as the entries; a removal or an
// expiry drops the entry's "c:" and "t:" fields and its "k:" field when
// it still names the entry. A process of a version without tokens writes
// none: its entries differ from ours by their info (the relay's name
// their process), which every condition compares too.
// Tokens start with their broker's prefix, so a refresh tells this
// broker's writes from another's (refreshable). The remove and expire
// scripts of such a version leave the "t:" field of the entries they drop:
// harmless (a write replaces it, the hash's TTL ends it) and small.

// dropKeyLua frees the claim key of client id and drops its token (a
// function of scripts taking the key hash as KEYS[3]).
const dropKeyLua = `
local function dropkey(id)
  local k = redis.call('hget', KEYS[3], 'c:' .. id)
  if k then
    redis.call('hdel', KEYS[3], 'c:' .. id)
    if redis.call('hget', KEYS[3], 'k:' .. k) == id then redis.call('hdel', KEYS[3], 'k:' .. k) end
  end
end
local function dropentry(id)
  redis.call('hdel', KEYS[1], id)
  redis.call('zrem', KEYS[2], id)
  dropkey(id)
  redis.call('hdel', KEYS[3], 't:' .. id)
end
`

// expireLua drops the entries expired at now (ARGV index given), with
// their keys and tokens.
const expireLua = `
local function expire(now)
  local gone = redis.call('zrangebyscore', KEYS[2], '-inf', now)
  for i = 1, #gone, 1000 do
    redis.call('hdel', KEYS[1], unpack(gone, i, math.min(i + 999, #gone)))
  end
  if #gone > 0 then
    redis.call('zremrangebyscore', KEYS[2], '-inf', now)
    if redis.call('exists', KEYS[3]) == 1 then
      for i = 1, #gone do
        dropkey(gone[i])
        redis.call('hdel', KEYS[3], 't:' .. gone[i])
      end
    end
  end
end
`

// ownLua: mine(id, info, token) reports whether id's entry is the write
// of token with info (an empty token matches any; so does an entry without
// one, a key hash Redis lost, when its info matches). refreshable(id,
// info, token, prefix), for a refresh of an entry present, returns the
// token to write when the entry is this broker's (mine, or the same info
// with another token of prefix: a write of this broker's that its
// local record missed, or one a Redis restore brought back, whose token
// is kept) and nil otherwise, with 'o' when the entry is another
// process's (other info or a token not of prefix) or 's' when it is an
// older write of this broker's with other info (left to expire).
const ownLua = `
local function mine(id, info, token)
  if redis.call('hget', KEYS[1], id) ~= info then return false end
  if token == '' then return true end
  local t = redis.call('hget', KEYS[3], 't:' .. id)
  return not t or t == token
end
local function refreshable(id, info, token, prefix)
  local v = redis.call('hget', KEYS[1], id)
  local t = redis.call('hget', KEYS[3], 't:' .. id)
  local ours = t and string.sub(t, 1, #prefix) == prefix
  if v == info then
    if not t or t == token then return token end
    if ours then return t end
    return nil, 'o'
  end
  if ours then return nil, 's' end
  return nil, 'o'
end
`

// addPresenceScript drops expired members (as claimPresenceScript), then
// writes the entry. KEYS: data hash, expiry zset, key hash. ARGV client
// ID, info, expiry (unix ms), key TTL ms, token, refresh (0/1), now
// (unix ms), token prefix of this broker. The claim key of an entry
// present stays. A refresh writes only when the entry is absent or this
// broker's (refreshable), never over another's write. Returns {'w',
// token written} or, for a refresh that wrote nothing, {'o'} or {'s'}
// (refreshable).
var addPresenceScript = rueidis.NewLuaScript(dropKeyLua + expireLua + ownLua + `
local id, tok = ARGV[1], ARGV[5]
expire(ARGV[7])
if ARGV[6] == '1' then
  if redis.call('hexists', KEYS[1], id) == 1 then
    local why
    tok, why = refreshable(id, ARGV[2], ARGV[5], ARGV[8])
    if not tok then return {why} end
  else
    dropkey(id)
  end
end
redis.call('zadd', KEYS[2], ARGV[3], id)
redis.call('hset', KEYS[1], id, ARGV[2])
redis.call('hset', KEYS[3], 't:' .. id, tok)
redis.call('pexpire', KEYS[1], ARGV[4])
redis.call('pexpire', KEYS[2], ARGV[4])
redis.call('pexpire', KEYS[3], ARGV[4])
return {'w', tok}
`)

// remPresenceScript: KEYS data hash, expiry zset, key hash. ARGV client ID.
var remPresenceScript = rueidis.NewLuaScript(dropKeyLua + `
dropentry(ARGV[1])
return 1
`)

// remOwnPresenceScript removes an entry only while it is the write of a
// token with an info (compare-and-delete). KEYS data hash, expiry zset,
// key hash. ARGV client ID, info, token (empty: any). Returns 1 (removed)
// or 0.
var remOwnPresenceScript = rueidis.NewLuaScript(dropKeyLua + ownLua + `
if not mine(ARGV[1], ARGV[2], ARGV[3]) then return 0 end
dropentry(ARGV[1])
return 1
`)

// presenceScript drops expired members, then returns the hash (field, value, …).
// KEYS data hash, expiry zset, key hash. ARGV now (unix ms).
var presenceScript = rueidis.NewLuaScript(dropKeyLua + expireLua + `
expire(ARGV[1])
return redis.call('hgetall', KEYS[1])
`)

// claimPresenceScript drops expired members, then adds the entry when the
// claim holds (or always). KEYS data hash, expiry zset, key hash. ARGV
// client ID, info, expiry (unix ms), key TTL ms, now (unix ms), max (0 =
// no cap), key (empty: none), always ('0'/'1'), token, refresh (0/1:
// as addPresenceScript's), token prefix of this broker, then the ignored
// client IDs.
// Returns {'a'} (added), {'a', holder} (added always, the key held by
// holder), {'f'} (full) or {'k', holder, holder's info}; a refresh
// returns {'w', token written}, {'o'} or {'s'} (refreshable).
var claimPresenceScript = rueidis.NewLuaScript(dropKeyLua + expireLua + ownLua + `
local id, key, max = ARGV[1], ARGV[7], tonumber(ARGV[6])
local always = ARGV[8] == '1'
local refresh, tok = ARGV[10] == '1', ARGV[9]
expire(ARGV[5])
if refresh and redis.call('hexists', KEYS[1], id) == 1 then
  local why
  tok, why = refreshable(id, ARGV[2], ARGV[9], ARGV[11])
  if not tok then return {why} end
end
local ignored = {[id] = true}
for i = 12, #ARGV do ignored[ARGV[i]] = true end
local free, holder = true, nil
if key ~= '' then
  local h = redis.call('hget', KEYS[3], 'k:' .. key)
  if h and not ignored[h] then
    local v = redis.call('hget', KEYS[1], h)
    if v then
      if not always then return {'k', h, v} end
      free, holder = false, h
    end
  end
end
if max > 0 and not always then
  local n = redis.call('hlen', KEYS[1])
  for c in pairs(ignored) do
    if redis.call('hexists', KEYS[1], c) == 1 then n = n - 1 end
  end
  if n >= max then return {'f'} end
end
redis.call('zadd', KEYS[2], ARGV[3], id)
redis.call('hset', KEYS[1], id, ARGV[2])
redis.call('hset', KEYS[3], 't:' .. id, tok)
if key ~= '' and free then
  dropkey(id)
  redis.call('hset', KEYS[3], 'k:' .. key, id, 'c:' .. id, key)
end
redis.call('pexpire', KEYS[1], ARGV[4])
redis.call('pexpire', KEYS[2], ARGV[4])
redis.call('pexpire', KEYS[3], ARGV[4])
if refresh then return {'w', tok} end
if holder then return {'a', holder} end
return {'a'}
`)
