-- The mutation script's history hooks (joined after outbox.lua and before mutate/ at load, scripts.py):
-- the log's state snapshots and time window, and the restore a support agent asks for.
-- argv[18]: events stamped before this time ('YYYY-MM-DDTHH:MM:SS.mmmZ') leave the log, '' for
-- none; argv[19]: every this many revisions, a log entry also carries the state after it.

local rs_cutoff, rs_every = '', 0

local function rs_begin(argv)
  rs_cutoff = argv[18] or ''
  rs_every = tonumber(argv[19] or '0') or 0
end
local RS_TRIM_BATCH = 16

local function rs_int(n)
  return string.format('%d', n)
end

-- The cart and wishlists as stored, joined here: cjson cannot tell an empty array from {}.
local function rs_state(k_meta, k_lines, k_wl, k_wli)
  local flat = redis.call('HGETALL', k_wli)
  local items = {}
  for i = 1, #flat, 2 do items[#items + 1] = '[' .. cjson.encode(flat[i]) .. ',' .. flat[i + 1] .. ']' end
  return '{"note":' .. cjson.encode(redis.call('HGET', k_meta, 'note') or '')
    .. ',"lines":[' .. table.concat(redis.call('HVALS', k_lines), ',')
    .. '],"wishlists":[' .. table.concat(redis.call('HVALS', k_wl), ',')
    .. '],"items":[' .. table.concat(items, ',') .. ']}'
end

-- Appends the change's event (with a snapshot every rs_every revisions), caps the log by
-- count, then drops a bounded batch of events older than the time window. An event ends in
-- ',"at":"<time>","epoch":"<hex>"}', so the match anchored at its end cannot hit user data.
-- head_at: meta's 'log_head_at', the time of the oldest event when it was last read (the count
-- cap only moves the head later), so the log is read only once that time leaves the window.
local function rs_append(k_log, k_meta, k_lines, k_wl, k_wli, log_max, rev, event, head_at)
  local id = rs_int(rev) .. '-0'
  if rs_every > 0 and rev % rs_every == 0 then
    redis.call('XADD', k_log, 'MAXLEN', log_max, id, 'e', event, 's', rs_state(k_meta, k_lines, k_wl, k_wli))
  else
    redis.call('XADD', k_log, 'MAXLEN', log_max, id, 'e', event)
  end
  if rs_cutoff == '' then return end
  if head_at and head_at >= rs_cutoff then return end
  -- Then the oldest event is usually still inside the window: one entry read, nothing trimmed.
  local head = redis.call('XRANGE', k_log, '-', '+', 'COUNT', 1)[1]
  head_at = string.match(head[2][2], '"at":"([^"]*)","epoch":"[^"]*"}$')
  if head_at == nil then return end
  if head_at >= rs_cutoff then
    redis.call('HSET', k_meta, 'log_head_at', head_at)
    return
  end
  local oldest = redis.call('XRANGE', k_log, '-', '+', 'COUNT', RS_TRIM_BATCH)
  local keep = nil
  for _, entry in ipairs(oldest) do
    local at = string.match(entry[2][2], '"at":"([^"]*)","epoch":"[^"]*"}$')
    if at == nil or at >= rs_cutoff then
      keep = entry[1]
      if at then redis.call('HSET', k_meta, 'log_head_at', at) end
      break
    end
  end
  if keep == nil then
    -- The whole batch is too old; the next change trims further.
    keep = rs_int(tonumber(string.match(oldest[#oldest][1], '^(%d+)')) + 1) .. '-0'
  end
  redis.call('XTRIM', k_log, 'MINID', keep)
end

-- The state support planned at revision p.at_rev (web/support.py), written as one change
-- through merge_apply, which replaces the cart and wishlists with what it is given.
local RS_MERGE_HEAD = '{"guest":"","strategy":""'

local function rs_restore(p, rev, guard, merge_apply, k_meta)
  local e = guard()
  if e then return nil, e end
  if rev ~= p.at_rev then
    return nil, {0, rev, 'cart_busy', 'the cart changed while the restore was planned; retry', ''}
  end
  p.guest, p.strategy = '', ''
  local res
  res, e = merge_apply()
  if e then return nil, e end
  redis.call('HSET', k_meta, 'note', p.note)
  res.type = 'cart.restored'
  res.data = '{"restored_rev":' .. rs_int(p.rev) .. ',"reason":' .. cjson.encode(p.reason)
    .. ',"wishlists_restored":' .. (p.with_wishlists and 'true' or 'false')
    .. ',"note":' .. cjson.encode(p.note) .. string.sub(res.data, #RS_MERGE_HEAD + 1)
  res.body = {{'restored_rev', rs_int(p.rev)}}
  return res
end
