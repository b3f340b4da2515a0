-- Wishlists and "save for later": storage helpers, then the operations.

-- Wishlists ---------------------------------------------------------------------------------

local SYSTEM = {default = true, saved = true}

local function get_wishlist(id)
  local raw = redis.call('HGET', K_WL, id)
  if raw then return cjson.decode(raw) end
end

local function wishlist_json(w, items_json)
  local public = {id = w.id, name = w.name, created_at = w.created_at, updated_at = w.updated_at}
  local encoded = cjson.encode(public)
  return string.sub(encoded, 1, -2) .. ',"items":' .. items_json .. '}'
end

local function items_json(wishlist_id)
  return json_array(sorted_values(K_WLI, wishlist_id .. '/'))
end

local function user_wishlist_count()
  local n = redis.call('HLEN', K_WL)
  for id in pairs(SYSTEM) do
    if redis.call('HEXISTS', K_WL, id) == 1 then n = n - 1 end
  end
  return n
end

-- Returns the wishlist, creating a system one on first use; nil for an unknown id.
local function open_wishlist(id)
  local w = get_wishlist(id)
  if w then return w end
  if SYSTEM[id] then
    return {id = id, name = id, name_key = id, created_at = now, updated_at = now, count = 0}
  end
end

local function put_wishlist(w)
  redis.call('HSET', K_WL, w.id, cjson.encode(w))
  fresh(K_WL)
end

local function add_item(w, fields)
  local item = {id = new_id('i'), sku = fields.sku, attrs = fields.attrs, added_at = now, added_by = actor,
                title = fields.title, note = fields.note}
  local encoded = cjson.encode(item)
  redis.call('HSET', K_WLI, w.id .. '/' .. item.id, encoded)
  redis.call('HSET', K_WIDX, w.id .. '/' .. fields.key, item.id, w.id .. '/#' .. item.id, fields.key)
  fresh(K_WLI)
  fresh(K_WIDX)
  w.count = w.count + 1
  w.updated_at = now
  put_wishlist(w)
  return encoded
end

local function drop_item(w, item_id)
  local key = redis.call('HGET', K_WIDX, w.id .. '/#' .. item_id)
  redis.call('HDEL', K_WLI, w.id .. '/' .. item_id)
  if key then redis.call('HDEL', K_WIDX, w.id .. '/' .. key, w.id .. '/#' .. item_id) end
  w.count = w.count - 1
  w.updated_at = now
  put_wishlist(w)
end

local function name_taken(name_key, except_id)
  if SYSTEM[name_key] then return true end
  for _, raw in ipairs(redis.call('HVALS', K_WL)) do
    local w = cjson.decode(raw)
    if w.name_key == name_key and w.id ~= except_id then return true end
  end
  return false
end

local function drop_prefixed(hash_key, prefix)
  local fields = redis.call('HKEYS', hash_key)
  for _, field in ipairs(fields) do
    if string.sub(field, 1, #prefix) == prefix then redis.call('HDEL', hash_key, field) end
  end
end

-- Operations --------------------------------------------------------------------------------

function ops.line_save_for_later()
  local line = get_line(p.line_id)
  if not line then return nil, err('line_not_found', 'no such line in this cart', 'line_id') end
  local w = open_wishlist('saved')
  local key = redis.call('HGET', K_LIDX, '#' .. line.id)
  local existing = redis.call('HGET', K_WIDX, 'saved/' .. key)
  if not existing and w.count >= limits.max_wishlist_items then
    return nil, err('limit_exceeded', 'a wishlist holds at most ' .. int(limits.max_wishlist_items) .. ' items', 'wishlist_id')
  end
  local e = guard()
  if e then return nil, e end
  drop_line(line.id)
  local ij
  if existing then
    ij = redis.call('HGET', K_WLI, 'saved/' .. existing)
    w.updated_at = now
    put_wishlist(w)
  else
    ij = add_item(w, {sku = line.sku, attrs = line.attrs, key = key, title = line.title})
  end
  local data = '{"line_id":' .. cjson.encode(line.id) .. ',"wishlist_id":"saved","item":' .. ij .. '}'
  return {status = 200, type = 'line.saved_for_later', data = data,
          body = {{'wishlist_id', '"saved"'}, {'item', ij}}}
end

function ops.wishlist_create()
  if user_wishlist_count() >= limits.max_wishlists - 2 then
    return nil, err('limit_exceeded', 'at most ' .. int(limits.max_wishlists) .. ' wishlists, including default and saved', 'name')
  end
  if name_taken(p.name_key) then
    return nil, err('wishlist_name_taken', 'a wishlist with this name exists', 'name')
  end
  local e = guard()
  if e then return nil, e end
  local w = {id = new_id('w'), name = p.name, name_key = p.name_key, created_at = now, updated_at = now, count = 0}
  put_wishlist(w)
  local wj = wishlist_json(w, '[]')
  return {status = 201, type = 'wishlist.created', data = '{"wishlist":' .. wj .. '}', body = {{'wishlist', wj}}}
end

function ops.wishlist_rename()
  local w = get_wishlist(p.wishlist_id)
  if not w and not SYSTEM[p.wishlist_id] then
    return nil, err('wishlist_not_found', 'no such wishlist', 'wishlist_id')
  end
  if SYSTEM[p.wishlist_id] then
    return nil, err('wishlist_protected', 'the ' .. p.wishlist_id .. ' wishlist cannot be renamed', 'wishlist_id')
  end
  if name_taken(p.name_key, w.id) then
    return nil, err('wishlist_name_taken', 'a wishlist with this name exists', 'name')
  end
  local e = guard()
  if e then return nil, e end
  w.name, w.name_key, w.updated_at = p.name, p.name_key, now
  put_wishlist(w)
  local wj = wishlist_json(w, items_json(w.id))
  return {status = 200, type = 'wishlist.renamed', data = '{"wishlist":' .. wj .. '}', body = {{'wishlist', wj}}}
end

function ops.wishlist_delete()
  if SYSTEM[p.wishlist_id] then
    return nil, err('wishlist_protected', 'the ' .. p.wishlist_id .. ' wishlist cannot be deleted', 'wishlist_id')
  end
  if redis.call('HEXISTS', K_WL, p.wishlist_id) == 0 then
    return nil, err('wishlist_not_found', 'no such wishlist', 'wishlist_id')
  end
  local e = guard()
  if e then return nil, e end
  redis.call('HDEL', K_WL, p.wishlist_id)
  drop_prefixed(K_WLI, p.wishlist_id .. '/')
  drop_prefixed(K_WIDX, p.wishlist_id .. '/')
  local idj = cjson.encode(p.wishlist_id)
  return {status = 200, type = 'wishlist.deleted', data = '{"wishlist_id":' .. idj .. '}',
          body = {{'removed', idj}}}
end

function ops.item_add()
  local w = open_wishlist(p.wishlist_id)
  if not w then return nil, err('wishlist_not_found', 'no such wishlist', 'wishlist_id') end
  local existing = redis.call('HGET', K_WIDX, w.id .. '/' .. p.key)
  if existing then
    -- Already on the list: nothing changes, no revision is spent.
    local ij = redis.call('HGET', K_WLI, w.id .. '/' .. existing)
    return {status = 200, unchanged = true, body = {{'item', ij}, {'created', 'false'}}}
  end
  if w.count >= limits.max_wishlist_items then
    return nil, err('limit_exceeded', 'a wishlist holds at most ' .. int(limits.max_wishlist_items) .. ' items', 'sku')
  end
  local e = guard()
  if e then return nil, e end
  local ij = add_item(w, p)
  local idj = cjson.encode(w.id)
  return {status = 201, type = 'wishlist.item_added', data = '{"wishlist_id":' .. idj .. ',"item":' .. ij .. '}',
          body = {{'item', ij}, {'created', 'true'}}}
end

function ops.item_remove()
  local w = open_wishlist(p.wishlist_id)
  if not w then return nil, err('wishlist_not_found', 'no such wishlist', 'wishlist_id') end
  if redis.call('HEXISTS', K_WLI, w.id .. '/' .. p.item_id) == 0 then
    return nil, err('item_not_found', 'no such item on this wishlist', 'item_id')
  end
  local e = guard()
  if e then return nil, e end
  drop_item(w, p.item_id)
  return {status = 200, type = 'wishlist.item_removed',
          data = cjson.encode({wishlist_id = w.id, item_id = p.item_id}),
          body = {{'removed', cjson.encode(p.item_id)}}}
end

function ops.item_move_to_cart()
  local w = open_wishlist(p.wishlist_id)
  if not w then return nil, err('wishlist_not_found', 'no such wishlist', 'wishlist_id') end
  local raw = redis.call('HGET', K_WLI, w.id .. '/' .. p.item_id)
  if not raw then return nil, err('item_not_found', 'no such item on this wishlist', 'item_id') end
  local item = cjson.decode(raw)
  -- p.sku: the item was priced by the catalogue before this script, as the sku read then.
  if p.sku and p.sku ~= item.sku then
    return nil, err('item_not_found', 'the item changed while it was being priced; retry', 'item_id')
  end
  local key = redis.call('HGET', K_WIDX, w.id .. '/#' .. p.item_id)
  local existing, e = check_add(key, p.qty)
  if e then return nil, e end
  e = guard()
  if e then return nil, e end
  drop_item(w, p.item_id)
  local fields = {sku = item.sku, attrs = item.attrs, key = key, title = item.title}
  if p.sku then
    fields = {sku = item.sku, attrs = item.attrs, key = key, title = p.title, unit_price = p.unit_price,
              currency = p.currency, image = p.image, priced_by = p.priced_by}
  end
  local lj = apply_add(existing, fields, p.qty)
  local data = '{"wishlist_id":' .. cjson.encode(w.id) .. ',"item_id":' .. cjson.encode(p.item_id)
    .. ',"line":' .. lj .. '}'
  return {status = 200, type = 'wishlist.item_moved_to_cart', data = data, body = {{'line', lj}}}
end
