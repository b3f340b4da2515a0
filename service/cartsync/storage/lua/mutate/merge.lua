-- Replaces the whole cart and wishlists with a merge result computed from a snapshot at rev
-- `expected`; the caller retries with a fresh snapshot when the revision moved.
function ops.merge_apply()
  local e = guard()
  if e then return nil, e end
  redis.call('DEL', K_LINES, K_LIDX, K_WL, K_WLI, K_WIDX)
  local lines = {}
  for i, l in ipairs(p.lines) do
    local key = l.key
    l.key = nil
    l.id = l.id or new_id('L')
    index_line(l.id, key)
    lines[i] = put_line(l)
  end
  local lists = {}
  for i, wl in ipairs(p.wishlists) do
    local w = {id = wl.id or new_id('w'), name = wl.name, name_key = wl.name_key,
               created_at = wl.created_at or now, updated_at = now, count = 0}
    local items = {}
    for j, it in ipairs(wl.items) do
      local key = it.key
      it.key = nil
      it.id = it.id or new_id('i')
      it.added_at = it.added_at or now
      it.added_by = it.added_by or actor
      items[j] = cjson.encode(it)
      redis.call('HSET', K_WLI, w.id .. '/' .. it.id, items[j])
      redis.call('HSET', K_WIDX, w.id .. '/' .. key, it.id, w.id .. '/#' .. it.id, key)
      fresh(K_WLI)
      fresh(K_WIDX)
      w.count = w.count + 1
    end
    put_wishlist(w)
    lists[i] = wishlist_json(w, json_array(items))
  end
  local data = '{"guest":' .. cjson.encode(p.guest) .. ',"strategy":' .. cjson.encode(p.strategy)
    .. ',"lines":' .. json_array(lines) .. ',"wishlists":' .. json_array(lists) .. '}'
  return {status = 200, type = 'cart.merged', data = data, body = {}}
end

-- A support agent's restore to an earlier revision (restore.lua), written like a merge.
function ops.cart_restore()
  return rs_restore(p, rev, guard, ops.merge_apply, K_META)
end
