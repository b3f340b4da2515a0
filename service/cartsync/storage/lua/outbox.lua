-- The mutation script's back-office hooks (joined after events.lua and before mutate/ at load).
-- keys[13..15]: the owner's partition outbox, deadlines and expiring carts; argv[17]: the
-- events settings as JSON, or '' when this owner produces no back-office events.

-- Set per call by ev_begin (library-level: loaded once as a Redis Function, scripts.py).
local K_OUTBOX, K_DUE, K_CARTS, K_EV_META, K_EV_LINES
local ev_conf, ev_conf_raw, ev_collection = nil, '', false

local function ev_begin(keys, argv)
  K_OUTBOX, K_DUE, K_CARTS = keys[13], keys[14], keys[15]
  K_EV_META, K_EV_LINES = keys[1], keys[2]
  local raw = argv[17] or ''
  -- The same settings on every call from one deployment: decoded once while they stay.
  if raw ~= ev_conf_raw then
    ev_conf_raw = raw
    ev_conf = nil
    if raw ~= '' then ev_conf = cjson.decode(raw) end
  end
  -- Read before the change: checkout clears the click-and-collect flag its event reports.
  ev_collection = ev_conf ~= nil and redis.call('HGET', K_EV_META, 'collection') == '1'
end

local function ev_body(res, name)
  for _, kv in ipairs(res.body) do
    if kv[1] == name then return kv[2] end
  end
end

-- After a change that spent revision `rev`: its event, if it has one, and the cart's deadlines.
local function ev_after_change(res, rev, epoch, owner, now, now_ms, owner_ttl_ms)
  if not ev_conf then return end
  local k_lines = K_EV_LINES
  local id = ev_id(epoch, rev)
  if res.type == 'cart.checked_out' then
    local snapshot = ev_body(res, 'checkout')
    local data = string.sub(snapshot, 1, -2) .. ',"ready_for_collection":'
      .. (ev_collection and 'true' or 'false') .. '}'
    ev_write(K_OUTBOX, owner, now, id, 'cart.checked_out', rev, epoch, data)
  elseif res.type == 'cart.collection_set' and ev_body(res, 'ready') == 'true' then
    local cart_id = redis.call('HGET', K_EV_META, 'cart_id') or ''
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
  local cart_id = redis.call('HGET', K_EV_META, 'cart_id') or ''
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
