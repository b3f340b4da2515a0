-- One atomic change to one owner's cart and wishlists.
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
local head = redis.call('HMGET', K_META, 'rev', 'epoch')
local rev = tonumber(head[1] or '0')
local epoch = head[2] or ''

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

-- Lines -------------------------------------------------------------------------------------

local function get_line(id)
  local raw = redis.call('HGET', K_LINES, id)
  if raw then return cjson.decode(raw) end
end

local function put_line(line)
  local encoded = cjson.encode(line)
  redis.call('HSET', K_LINES, line.id, encoded)
  return encoded
end

local function index_line(id, key)
  redis.call('HSET', K_LIDX, key, id, '#' .. id, key)
end

local function drop_line(id)
  local key = redis.call('HGET', K_LIDX, '#' .. id)
  redis.call('HDEL', K_LINES, id)
  if key then redis.call('HDEL', K_LIDX, key, '#' .. id) end
end

local function sorted_values(hash_key, prefix)
  local flat = redis.call('HGETALL', hash_key)
  local rows = {}
  for i = 1, #flat, 2 do
    local field = flat[i]
    if prefix == nil or string.sub(field, 1, #prefix) == prefix then
      local id = prefix and string.sub(field, #prefix + 1) or field
      rows[#rows + 1] = {seq_of(id), flat[i + 1]}
    end
  end
  table.sort(rows, function(a, b) return a[1] < b[1] end)
  local out = {}
  for i, row in ipairs(rows) do out[i] = row[2] end
  return out
end

-- Checks that adding `qty` of `key` to the cart fits; returns the existing line or nil, or an error.
local function check_add(key, qty)
  local id = redis.call('HGET', K_LIDX, key)
  if id then
    local line = get_line(id)
    if line.qty + qty > limits.max_qty then
      return nil, err('limit_exceeded', 'a line holds at most ' .. int(limits.max_qty) .. ' units', 'qty')
    end
    return line
  end
  if qty > limits.max_qty then
    return nil, err('limit_exceeded', 'a line holds at most ' .. int(limits.max_qty) .. ' units', 'qty')
  end
  if redis.call('HLEN', K_LINES) >= limits.max_lines then
    return nil, err('limit_exceeded', 'a cart holds at most ' .. int(limits.max_lines) .. ' lines', 'sku')
  end
end

-- Adds to an existing line or creates one; call only after check_add and guard.
local function apply_add(existing, fields, qty)
  local line = existing
  local created = false
  if line then
    line.qty = line.qty + qty
  else
    created = true
    line = {id = new_id('L'), sku = fields.sku, qty = qty, attrs = fields.attrs, added_at = now}
    index_line(line.id, fields.key)
  end
  -- Price fields come from one pricer (web/commands.py); absent ones keep their values, so an
  -- unpriced add (catalogue down, failure mode open) leaves an earlier price alone.
  for _, f in ipairs({'title', 'unit_price', 'currency', 'image', 'priced_by'}) do
    if fields[f] then line[f] = fields[f] end
  end
  line.priced = line.unit_price ~= nil
  line.updated_at = now
  line.updated_by = actor
  return put_line(line), created
end

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
end

local function add_item(w, fields)
  local item = {id = new_id('i'), sku = fields.sku, attrs = fields.attrs, added_at = now, added_by = actor,
                title = fields.title, note = fields.note}
  local encoded = cjson.encode(item)
  redis.call('HSET', K_WLI, w.id .. '/' .. item.id, encoded)
  redis.call('HSET', K_WIDX, w.id .. '/' .. fields.key, item.id, w.id .. '/#' .. item.id, fields.key)
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
-- Each returns a result {status, type, data, body = {{name, json}, ...}} or nil and an error.

local ops = {}

function ops.line_add()
  local existing, e = check_add(p.key, p.qty)
  if e then return nil, e end
  e = guard()
  if e then return nil, e end
  local lj, created = apply_add(existing, p, p.qty)
  return {status = created and 201 or 200, type = created and 'line.added' or 'line.updated',
          data = '{"line":' .. lj .. '}', body = {{'line', lj}}}
end

function ops.line_update()
  local line = get_line(p.line_id)
  if not line then return nil, err('line_not_found', 'no such line in this cart', 'line_id') end
  -- A delta is resolved here, against the stored quantity: taps made on a stale screen all count.
  if p.qty_delta then p.qty = math.max(0, line.qty + p.qty_delta) end
  if p.qty == 0 then
    local e = guard()
    if e then return nil, e end
    drop_line(line.id)
    return {status = 200, type = 'line.removed', data = cjson.encode({line_id = line.id}),
            body = {{'removed', cjson.encode(line.id)}}}
  end
  if p.qty and p.qty > limits.max_qty then
    return nil, err('limit_exceeded', 'a line holds at most ' .. int(limits.max_qty) .. ' units', 'qty')
  end
  local old_key = redis.call('HGET', K_LIDX, '#' .. line.id)
  if p.attrs_key then p.key = line.sku .. p.attrs_key end
  if p.key and p.key ~= old_key and redis.call('HEXISTS', K_LIDX, p.key) == 1 then
    return nil, err('line_conflict', 'another line has this sku and attrs; change its quantity instead', 'attrs')
  end
  local e = guard()
  if e then return nil, e end
  if p.key and p.key ~= old_key then
    if old_key then redis.call('HDEL', K_LIDX, old_key) end
    index_line(line.id, p.key)
    line.attrs = p.attrs
  end
  if p.qty then line.qty = p.qty end
  line.updated_at = now
  line.updated_by = actor
  local lj = put_line(line)
  return {status = 200, type = 'line.updated', data = '{"line":' .. lj .. '}', body = {{'line', lj}}}
end

function ops.line_remove()
  if redis.call('HEXISTS', K_LINES, p.line_id) == 0 then
    return nil, err('line_not_found', 'no such line in this cart', 'line_id')
  end
  local e = guard()
  if e then return nil, e end
  drop_line(p.line_id)
  return {status = 200, type = 'line.removed', data = cjson.encode({line_id = p.line_id}),
          body = {{'removed', cjson.encode(p.line_id)}}}
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

-- Consent: staff access to this owner's data, started by a claimed hand-off code.
function ops.grant_start()
  local e = guard()
  if e then return nil, e end
  local gj = cjson.encode(p.grant)
  redis.call('HSET', K_GRANTS, p.grant.id, gj)
  return {status = 201, type = 'grant.started', data = '{"grant":' .. gj .. '}', body = {{'grant', gj}}}
end

function ops.grant_revoke()
  if redis.call('HEXISTS', K_GRANTS, p.grant_id) == 0 then
    return nil, err('grant_not_found', 'no such grant', 'grant_id')
  end
  local e = guard()
  if e then return nil, e end
  redis.call('HDEL', K_GRANTS, p.grant_id)
  local idj = cjson.encode(p.grant_id)
  return {status = 200, type = 'grant.revoked', data = '{"grant_id":' .. idj .. '}', body = {{'removed', idj}}}
end

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

-- Entry -------------------------------------------------------------------------------------

local DATA_KEYS = {K_META, K_LINES, K_LIDX, K_WL, K_WLI, K_WIDX, K_LOG, K_IDEM, K_IDEMX, K_GRANTS}

if op == 'erase' then
  ev_erased(rev, epoch, owner, now)
  redis.call('DEL', K_META, K_LINES, K_LIDX, K_WL, K_WLI, K_WIDX, K_LOG, K_IDEM, K_IDEMX, K_CLAIM,
    K_GRANTS)
  if publish ~= '' then
    -- Not logged (the log is gone too): live sockets see a new, empty epoch and resnapshot.
    redis.call(publish, K_CHAN, '{"rev":0,"type":"owner.erased","data":{},"actor":' .. actor_json
      .. ',"at":"' .. now .. '","epoch":""}')
  end
  return {200, 0, '{"erased":true}', 0}
end

-- A guest being merged into a customer is frozen; once merged, it stays closed.
local claim = redis.call('GET', K_CLAIM)

if op == 'merge_claim' then
  if claim then
    local c = cjson.decode(claim)
    if c.customer ~= p.customer then
      return err('guest_merged_elsewhere', 'this guest cart belongs to a merge into another account', 'guest_token')
    end
    return {200, rev, claim, 1}
  end
  -- rev is joined in, not given to cjson, which writes numbers with 14 significant digits.
  local c = cjson.encode({merge_id = owner .. '@' .. int(rev), customer = p.customer, state = 'claimed'})
  c = string.sub(c, 1, -2) .. ',"rev":' .. int(rev) .. '}'
  redis.call('SET', K_CLAIM, c, 'PX', p.claim_ttl_ms)
  return {200, rev, c, 0}
end

if op == 'merge_finish' then
  if not claim then return err('merge_not_claimed', 'no merge is pending for this guest') end
  local c = cjson.decode(claim)
  if c.merge_id ~= p.merge_id then return err('merge_not_claimed', 'another merge holds this guest') end
  c.state = 'done'
  local claimed_at = c.rev
  c.rev = nil
  local done = cjson.encode(c)
  done = string.sub(done, 1, -2) .. ',"rev":' .. int(claimed_at) .. '}'
  redis.call('DEL', K_META, K_LINES, K_LIDX, K_WL, K_WLI, K_WIDX, K_LOG, K_IDEM, K_IDEMX, K_GRANTS)
  redis.call('SET', K_CLAIM, done, 'PX', p.tombstone_ttl_ms)
  return {200, 0, done, 0}
end

local prior = redis.call('HGET', K_IDEM, op_id)
if prior then
  local rec = cjson.decode(prior)
  if rec.fp ~= fingerprint then
    return err('idempotency_key_reused', 'this Idempotency-Key was first used for a different request', 'Idempotency-Key')
  end
  return {rec.status, rec.rev, rec.body, 1}
end

if claim then
  local c = cjson.decode(claim)
  if c.state == 'done' then
    return err('guest_merged', 'this guest cart was merged into a customer account; sign in to continue')
  end
  return err('cart_merging', 'this guest cart is being merged into a customer account')
end

local handler = ops[op]
if not handler then return redis.error_reply('unknown op ' .. tostring(op)) end

local res, e = handler()
if e then return e end

if not res.unchanged then
  if rev == 0 then
    redis.call('HSET', K_META, 'created_at', now)
    redis.call('HSETNX', K_META, 'cart_id', fresh_id)
    redis.call('HSETNX', K_META, 'currency', currency)
    -- A new epoch whenever an owner's data starts from nothing (first use, erasure, expiry,
    -- a Redis that lost its data): revisions of different epochs are not comparable.
    epoch = string.sub(fresh_id, 17)
    redis.call('HSET', K_META, 'epoch', epoch)
  end
  rev = redis.call('HINCRBY', K_META, 'rev', 1)
  redis.call('HSET', K_META, 'updated_at', now)
  local event = '{"rev":' .. int(rev) .. ',"type":"' .. res.type .. '","data":' .. res.data
    .. ',"actor":' .. actor_json .. ',"at":"' .. now .. '","epoch":"' .. epoch .. '"}'
  rs_append(K_LOG, K_META, K_LINES, K_WL, K_WLI, log_max, rev, event)
  if publish ~= '' then redis.call(publish, K_CHAN, event) end
  ev_after_change(res, rev, epoch, owner, now, now_ms, owner_ttl_ms)
end

local parts = {'"rev":' .. int(rev)}
for _, kv in ipairs(res.body) do parts[#parts + 1] = '"' .. kv[1] .. '":' .. kv[2] end
local body = '{' .. table.concat(parts, ',') .. '}'

for _, stale in ipairs(redis.call('ZRANGEBYSCORE', K_IDEMX, '-inf', now_ms, 'LIMIT', 0, 8)) do
  redis.call('HDEL', K_IDEM, stale)
  redis.call('ZREM', K_IDEMX, stale)
end
local record = cjson.encode({fp = fingerprint, status = res.status, body = body})
redis.call('HSET', K_IDEM, op_id, string.sub(record, 1, -2) .. ',"rev":' .. int(rev) .. '}')
redis.call('ZADD', K_IDEMX, now_ms + op_ttl_ms, op_id)

for _, key in ipairs(DATA_KEYS) do redis.call('PEXPIRE', key, owner_ttl_ms) end

return {res.status, rev, body, 0}
