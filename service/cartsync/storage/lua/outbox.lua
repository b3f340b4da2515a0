-- The mutation script's back-office hooks (joined after events.lua and before mutate/ at load).
-- KEYS[13..15]: the owner's partition outbox, deadlines and expiring carts; ARGV[17]: the
-- events settings as JSON, or '' when this owner produces no back-office events.

local K_OUTBOX, K_DUE, K_CARTS = KEYS[13], KEYS[14], KEYS[15]
local ev_conf = nil
if (ARGV[17] or '') ~= '' then ev_conf = cjson.decode(ARGV[17]) end
-- Read before the change: checkout clears the click-and-collect flag its event reports.
local ev_collection = ev_conf ~= nil and redis.call('HGET', KEYS[1], 'collection') == '1'

local function ev_body(res, name)
  for _, kv in ipairs(res.body) do
    if kv[1] == name then return kv[2] end
  end
end

-- After a change that spent revision `rev`: its event, if it has one, and the cart's deadlines.
local function ev_after_change(res, rev, epoch, owner, now, now_ms, owner_ttl_ms)
  if not ev_conf then return end
  local k_lines = KEYS[2]
  local id = ev_id(epoch, rev)
  if res.type == 'cart.checked_out' then
    local snapshot = ev_body(res, 'checkout')
    local data = string.sub(snapshot, 1, -2) .. ',"ready_for_collection":'
      .. (ev_collection and 'true' or 'false') .. '}'
    ev_write(K_OUTBOX, owner, now, id, 'cart.checked_out', rev, epoch, data)
  elseif res.type == 'cart.collection_set' and ev_body(res, 'ready') == 'true' then
    local cart_id = redis.call('HGET', KEYS[1], 'cart_id') or ''
    ev_write(K_OUTBOX, owner, now, id, 'cart.collection_ready', rev, epoch,
      '{"cart_id":' .. cjson.encode(cart_id) .. ',"lines":' .. ev_lines(k_lines)
      .. ',"collection":' .. ev_body(res, 'collection') .. '}')
  elseif res.type == 'wishlist.item_added' then
    ev_write(K_OUTBOX, owner, now, id, 'wishlist.item_added', rev, epoch, res.data)
  end
  if redis.call('HLEN', k_lines) == 0 then
    ev_disarm(K_DUE, K_CARTS, owner)
    return
  end
  -- Every change re-arms the deadlines: abandonment counts from the last change, expiry from
  -- the TTL this change just set on the owner's keys.
  redis.call('ZADD', K_DUE, now_ms + ev_conf.abandon_ms, 'a|' .. owner)
  if owner_ttl_ms > ev_conf.notice_ms then
    redis.call('ZADD', K_DUE, now_ms + owner_ttl_ms - ev_conf.notice_ms, 'x|' .. owner)
  else
    redis.call('ZREM', K_DUE, 'x|' .. owner)
  end
  -- A second after the keys expire, so the sweeper finds them gone.
  redis.call('ZADD', K_DUE, now_ms + owner_ttl_ms + 1000, 'e|' .. owner)
  local cart_id = redis.call('HGET', KEYS[1], 'cart_id') or ''
  redis.call('HSET', K_CARTS, owner, '{"cart_id":' .. cjson.encode(cart_id) .. ',"epoch":'
    .. cjson.encode(epoch) .. ',"rev":' .. ev_int(rev) .. ',"expires_at_ms":'
    .. ev_int(now_ms + owner_ttl_ms) .. '}')
end

-- Erasure: `customer.erased` is the owner's last event; no deadline of theirs is left to fire.
local function ev_erased(rev, epoch, owner, now)
  if not ev_conf then return end
  ev_disarm(K_DUE, K_CARTS, owner)
  if rev > 0 then
    ev_write(K_OUTBOX, owner, now, ev_id(epoch, rev, '_erased'), 'customer.erased', rev, epoch, '{}')
  end
end
