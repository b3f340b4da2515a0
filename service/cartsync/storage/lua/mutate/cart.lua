-- The cart as a whole: clear, note, checkout, click-and-collect.

-- Click-and-collect lives in the owner's meta: 'collection' ('1': ready) and 'pickup' (the
-- chosen store and time as JSON {"store_id","store_name","pickup_at"}, made in Python; '': none).
-- Its JSON: that object with "ready" added, or nulls when no store is chosen.
local function collection_json(ready, pickup)
  if not pickup or pickup == '' then
    pickup = '{"store_id":null,"store_name":null,"pickup_at":null}'
  end
  return string.sub(pickup, 1, -2) .. ',"ready":' .. (ready and 'true' or 'false') .. '}'
end

function ops.cart_clear()
  local e = guard()
  if e then return nil, e end
  redis.call('DEL', K_LINES, K_LIDX)
  return {status = 200, type = 'cart.cleared', data = '{}', body = {}}
end

function ops.note_set()
  local e = guard()
  if e then return nil, e end
  redis.call('HSET', K_META, 'note', p.note)
  local nj = cjson.encode(p.note)
  return {status = 200, type = 'cart.note_set', data = '{"note":' .. nj .. '}', body = {{'note', nj}}}
end

function ops.checkout()
  if redis.call('HLEN', K_LINES) == 0 then
    return nil, err('cart_empty', 'an empty cart cannot be checked out')
  end
  local e = guard()
  if e then return nil, e end
  local meta = redis.call('HMGET', K_META, 'cart_id', 'currency', 'note', 'collection', 'pickup')
  local head = cjson.encode({cart_id = meta[1] or fresh_id, owner = owner, currency = meta[2] or currency,
                             note = meta[3] or '', checked_out_at = now})
  local snapshot = string.sub(head, 1, -2) .. ',"lines":' .. json_array(sorted_values(K_LINES))
    .. ',"collection":' .. collection_json(meta[4] == '1', meta[5]) .. '}'
  redis.call('DEL', K_LINES, K_LIDX)
  redis.call('HSET', K_META, 'cart_id', fresh_id, 'note', '', 'collection', '', 'pickup', '')
  return {status = 200, type = 'cart.checked_out',
          data = '{"checkout":' .. snapshot .. ',"cart_id":' .. cjson.encode(fresh_id) .. '}',
          body = {{'checkout', snapshot}, {'cart_id', cjson.encode(fresh_id)}}}
end

-- p.ready: true/false, or absent to keep it; p.pickup: the choice's JSON, '' to clear it, or
-- absent to keep it. The event and the answer carry the whole resulting choice.
function ops.collection_set()
  -- A pick-up time that has come too close since an accepted first try: refused here, after the
  -- replay check, so that retry still answers what it did (the reason comes from domain/pickup.py).
  if p.late then return nil, err('invalid_pickup', p.late, 'pickup_at') end
  local choosing = p.pickup ~= nil and p.pickup ~= ''
  if (p.ready or choosing) and redis.call('HLEN', K_LINES) == 0 then
    return nil, err('cart_empty', 'an empty cart cannot be collected', choosing and 'store_id' or 'ready')
  end
  local e = guard()
  if e then return nil, e end
  local cur = redis.call('HMGET', K_META, 'collection', 'pickup')
  local ready = cur[1] == '1'
  if p.ready ~= nil then ready = p.ready end
  local pickup = cur[2] or ''
  if p.pickup ~= nil then pickup = p.pickup end
  redis.call('HSET', K_META, 'collection', ready and '1' or '', 'pickup', pickup)
  local cj = collection_json(ready, pickup)
  return {status = 200, type = 'cart.collection_set', data = cj,
          body = {{'ready', ready and 'true' or 'false'}, {'collection', cj}}}
end
