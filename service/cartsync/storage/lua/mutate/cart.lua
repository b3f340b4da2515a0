-- The cart as a whole: clear, note, checkout, click-and-collect.

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
  local meta = redis.call('HMGET', K_META, 'cart_id', 'currency', 'note')
  local head = cjson.encode({cart_id = meta[1] or fresh_id, owner = owner, currency = meta[2] or currency,
                             note = meta[3] or '', checked_out_at = now})
  local snapshot = string.sub(head, 1, -2) .. ',"lines":' .. json_array(sorted_values(K_LINES)) .. '}'
  redis.call('DEL', K_LINES, K_LIDX)
  redis.call('HSET', K_META, 'cart_id', fresh_id, 'note', '', 'collection', '')
  return {status = 200, type = 'cart.checked_out',
          data = '{"checkout":' .. snapshot .. ',"cart_id":' .. cjson.encode(fresh_id) .. '}',
          body = {{'checkout', snapshot}, {'cart_id', cjson.encode(fresh_id)}}}
end

function ops.collection_set()
  if p.ready and redis.call('HLEN', K_LINES) == 0 then
    return nil, err('cart_empty', 'an empty cart cannot be ready for collection', 'ready')
  end
  local e = guard()
  if e then return nil, e end
  redis.call('HSET', K_META, 'collection', p.ready and '1' or '')
  local rj = p.ready and 'true' or 'false'
  return {status = 200, type = 'cart.collection_set', data = '{"ready":' .. rj .. '}',
          body = {{'ready', rj}}}
end
