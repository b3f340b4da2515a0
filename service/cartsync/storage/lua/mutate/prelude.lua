-- One atomic change to one owner's cart and wishlists: the shared prelude (keys, arguments,
-- helpers). storage/scripts.py joins, in this order, events.lua, outbox.lua and restore.lua
-- (hooks), then mutate/prelude, lines, wishlists, cart, consent, merge and entry (the
-- dispatcher, mutate()) into one library.
--
-- Every key is declared in the call's keys and shares the owner's hash tag, so this runs
-- unchanged on a Redis Cluster slot. Handlers validate first, then call guard() (If-Match), then
-- write: Redis does not roll a script back, so nothing may be written before the last check.
--
-- Reply: {status, rev, body, replayed} on success; {0, rev, code, message, field} on refusal.
-- JSON is produced by cjson for values; objects and arrays of already-encoded JSON are joined
-- here because cjson cannot tell an empty array from an empty object.

-- This code runs once when Redis loads it as a Function library (Redis 7+, storage/scripts.py),
-- or on every call as an EVAL script (6.2). What a call brings is set by begin(), at the start
-- of every call, into the locals below, which the helpers and operations read: Redis runs one
-- function at a time, so no two calls share them.

local K_META, K_LINES, K_LIDX, K_WL, K_WLI, K_WIDX
local K_LOG, K_IDEM, K_IDEMX, K_CHAN, K_CLAIM, K_GRANTS
local op, op_id, fingerprint, op_ttl_ms, expected, now, now_ms, actor_json, owner_ttl_ms
local log_max, publish, p, owner, fresh_id, currency, actor
local limits, limits_raw = nil, ''
local head, rev, epoch
local life_left, renew, life_ms, created

local function begin(keys, argv)
  K_META, K_LINES, K_LIDX, K_WL, K_WLI, K_WIDX = keys[1], keys[2], keys[3], keys[4], keys[5], keys[6]
  K_LOG, K_IDEM, K_IDEMX, K_CHAN, K_CLAIM = keys[7], keys[8], keys[9], keys[10], keys[11]
  K_GRANTS = keys[12]

  op = argv[1]
  op_id = argv[2]
  fingerprint = argv[3]
  op_ttl_ms = tonumber(argv[4])
  expected = argv[5]
  now = argv[6]
  now_ms = tonumber(argv[7])
  actor_json = argv[8]
  owner_ttl_ms = tonumber(argv[9])
  log_max = tonumber(argv[10])
  publish = argv[11]
  -- The same limits on every call from one deployment: decoded once while they stay.
  if argv[12] ~= limits_raw then
    limits = cjson.decode(argv[12])
    limits_raw = argv[12]
  end
  p = cjson.decode(argv[13])
  owner = argv[14]
  fresh_id = argv[15]
  currency = argv[16]

  actor = cjson.decode(actor_json)
  head = redis.call('HMGET', K_META, 'rev', 'epoch', 'log_head_at')
  rev = tonumber(head[1] or '0')
  epoch = head[2] or ''

  -- Every key of an owner expires at the same moment, owner_ttl_ms after a recent change.
  -- Setting that on every key at every change cost a sixth of the script, so the lifetime is
  -- renewed only once a tenth of it (at most an hour) has passed; a key this change creates
  -- (fresh() below) gets the lifetime the others have left. PTTL is -2 for a new owner and -1
  -- for keys without a lifetime: both renew, as does a lifetime longer than the one
  -- configured (it was shortened).
  life_left = redis.call('PTTL', K_META)
  renew = life_left < owner_ttl_ms - math.min(owner_ttl_ms / 10, 3600000)
    or life_left > owner_ttl_ms
  life_ms = renew and owner_ttl_ms or life_left
  created = {}
end

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
