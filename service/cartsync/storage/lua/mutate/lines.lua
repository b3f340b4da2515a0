-- A cart's lines: storage helpers, then the operations on lines.

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

-- Every new line is indexed: the one place where K_LINES and K_LIDX can be created.
local function index_line(id, key)
  redis.call('HSET', K_LIDX, key, id, '#' .. id, key)
  fresh(K_LINES)
  fresh(K_LIDX)
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
