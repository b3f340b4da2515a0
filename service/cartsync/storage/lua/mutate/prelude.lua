-- One atomic change to one owner's cart and wishlists: the shared prelude (keys, arguments,
-- helpers). store.py joins, in this order, events.lua, outbox.lua and restore.lua (hooks), then
-- mutate/prelude, lines, wishlists, cart, consent, merge and entry (the dispatcher) into one script.
--
-- Every key is declared in KEYS and shares the owner's hash tag, so this runs unchanged on a
-- Redis Cluster slot. Handlers validate first, then call guard() (If-Match), then write: Redis
-- does not roll a script back, so nothing may be written before the last check.
--
-- Reply: {status, rev, body, replayed} on success; {0, rev, code, message, field} on refusal.
-- JSON is produced by cjson for values; objects and arrays of already-encoded JSON are joined
-- here because cjson cannot tell an empty array from an empty object.

local K_META, K_LINES, K_LIDX, K_WL, K_WLI, K_WIDX = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local K_LOG, K_IDEM, K_IDEMX, K_CHAN, K_CLAIM = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local K_GRANTS = KEYS[12]

local op = ARGV[1]
local op_id = ARGV[2]
local fingerprint = ARGV[3]
local op_ttl_ms = tonumber(ARGV[4])
local expected = ARGV[5]
local now = ARGV[6]
local now_ms = tonumber(ARGV[7])
local actor_json = ARGV[8]
local owner_ttl_ms = tonumber(ARGV[9])
local log_max = tonumber(ARGV[10])
local publish = ARGV[11]
local limits = cjson.decode(ARGV[12])
local p = cjson.decode(ARGV[13])
local owner = ARGV[14]
local fresh_id = ARGV[15]
local currency = ARGV[16]

local actor = cjson.decode(actor_json)
local head = redis.call('HMGET', K_META, 'rev', 'epoch', 'log_head_at')
local rev = tonumber(head[1] or '0')
local epoch = head[2] or ''

-- Every key of an owner expires at the same moment, owner_ttl_ms after a recent change. Setting
-- that on every key at every change cost a sixth of the script, so the lifetime is renewed only
-- once a tenth of it (at most an hour) has passed; a key this change creates (fresh() below)
-- gets the lifetime the others have left. PTTL is -2 for a new owner and -1 for keys without a
-- lifetime: both renew, as does a lifetime longer than the one configured (it was shortened).
local life_left = redis.call('PTTL', K_META)
local renew = life_left < owner_ttl_ms - math.min(owner_ttl_ms / 10, 3600000)
  or life_left > owner_ttl_ms
local life_ms = renew and owner_ttl_ms or life_left
local created = {}

-- Call with each key a write may have created (a field added to a hash that can be empty).
local function fresh(key)
  created[key] = true
end

-- Integers as Redis and JSON expect them: never tostring or '..' on a number, which write
-- 10^14 + 1 as '1e+14' (an invalid stream id, a rounded revision). Exact up to 2^53 - 1, the
-- largest revision the edge admits.
local function int(n)
  return string.format('%d', n)
end

local function err(code, message, field)
  return {0, rev, code, message, field or ''}
end

local function guard()
  if expected ~= '' and tonumber(expected) ~= rev then
    return err('revision_mismatch', 'the cart is at revision ' .. int(rev) .. '; reload and retry', 'If-Match')
  end
end

local function new_id(prefix)
  return prefix .. int(redis.call('HINCRBY', K_META, 'seq', 1))
end

local function seq_of(id)
  return tonumber(string.sub(id, 2)) or -1
end

local function json_array(parts)
  return '[' .. table.concat(parts, ',') .. ']'
end

-- Each operation, defined in the files that follow, returns a result
-- {status, type, data, body = {{name, json}, ...}} or nil and an error.
local ops = {}
