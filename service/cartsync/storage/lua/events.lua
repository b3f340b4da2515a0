-- Back-office events, shared by the scripts that write them (joined in front at load, scripts.py).
--
-- Each event is one outbox entry in the owner's partition (storage/keys.py PartitionKeys), whose
-- keys hash to the owner's Cluster slot, so the change and its event are one atomic script.
-- An event id is made of the owner's epoch and revision, so a retry never makes a new one.

local function ev_int(n)
  return string.format('%d', n)
end

-- Appends one event to the outbox; `data` is JSON text.
local function ev_write(k_outbox, owner, now, id, type, rev, epoch, data)
  local customer = 'null'
  if string.sub(owner, 1, 2) == 'c:' then customer = cjson.encode(string.sub(owner, 3)) end
  local event = '{"id":' .. cjson.encode(id) .. ',"type":"' .. type .. '","occurred_at":"' .. now
    .. '","owner":' .. cjson.encode(owner) .. ',"customer_id":' .. customer .. ',"rev":' .. ev_int(rev)
    .. ',"epoch":' .. cjson.encode(epoch) .. ',"data":' .. data .. '}'
  redis.call('XADD', k_outbox, '*', 'o', owner, 't', type, 'e', event)
end

local function ev_id(epoch, rev, suffix)
  return 'evt_' .. epoch .. '_' .. ev_int(rev) .. (suffix or '')
end

-- The cart's lines as a JSON array, in the order they were added.
local function ev_lines(k_lines)
  local flat = redis.call('HGETALL', k_lines)
  local rows = {}
  for i = 1, #flat, 2 do
    rows[#rows + 1] = {tonumber(string.sub(flat[i], 2)) or -1, flat[i + 1]}
  end
  table.sort(rows, function(a, b) return a[1] < b[1] end)
  local out = {}
  for i, row in ipairs(rows) do out[i] = row[2] end
  return '[' .. table.concat(out, ',') .. ']'
end

local function ev_disarm(k_due, k_carts, owner)
  redis.call('ZREM', k_due, 'a|' .. owner, 'x|' .. owner, 'e|' .. owner)
  redis.call('HDEL', k_carts, owner)
end
