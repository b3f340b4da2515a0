-- A due deadline of one owner (joined after events.lua): `cart.abandoned`, `cart.expiring` or
-- `cart.expired`, written to the owner's partition outbox if the deadline still stands.
-- Any change of the owner re-arms its deadlines with new scores, so a score that is no longer
-- the lease the worker holds means the deadline moved: nothing is written.
--
-- KEYS: the owner's meta and lines, the partition's outbox, deadlines, carts.
-- ARGV: deadline member, lease score, owner, now (ISO), now_ms.
-- Reply: 1 if an event was written, else 0.

local K_META, K_LINES, K_OUTBOX, K_DUE, K_CARTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member, lease, owner, now, now_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])

local score = redis.call('ZSCORE', K_DUE, member)
if not score or tonumber(score) ~= tonumber(lease) then return 0 end
redis.call('ZREM', K_DUE, member)
local kind = string.sub(member, 1, 1)

if kind == 'e' then
  local ttl = redis.call('PTTL', K_META)
  if ttl > 0 then
    -- Still there (its time was renewed): look again when it would expire.
    redis.call('ZADD', K_DUE, now_ms + ttl + 1000, member)
    return 0
  end
  local info = redis.call('HGET', K_CARTS, owner)
  if not info then return 0 end
  redis.call('HDEL', K_CARTS, owner)
  redis.call('ZREM', K_DUE, 'a|' .. owner, 'x|' .. owner)
  local c = cjson.decode(info)
  ev_write(K_OUTBOX, owner, now, ev_id(c.epoch, c.rev, '_expired'), 'cart.expired', c.rev, c.epoch,
    '{"cart_id":' .. cjson.encode(c.cart_id) .. '}')
  return 1
end

local meta = redis.call('HMGET', K_META, 'rev', 'epoch', 'cart_id', 'updated_at')
if not meta[1] or redis.call('HLEN', K_LINES) == 0 then return 0 end
local rev, epoch = tonumber(meta[1]), meta[2] or ''
local cart = '{"cart_id":' .. cjson.encode(meta[3] or '') .. ',"lines":' .. ev_lines(K_LINES)
if kind == 'a' then
  ev_write(K_OUTBOX, owner, now, ev_id(epoch, rev, '_abandoned'), 'cart.abandoned', rev, epoch,
    cart .. ',"last_change_at":' .. cjson.encode(meta[4] or '') .. '}')
  return 1
end
if kind == 'x' then
  local ttl = redis.call('PTTL', K_META)
  ev_write(K_OUTBOX, owner, now, ev_id(epoch, rev, '_expiring'), 'cart.expiring', rev, epoch,
    cart .. ',"expires_in_seconds":' .. ev_int(math.max(0, math.floor(ttl / 1000))) .. '}')
  return 1
end
return 0
