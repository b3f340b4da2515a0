-- A consistent read of one owner's data in one round trip.
-- argv[1]: 'cart' | 'wishlists' | 'state' (both) | 'all' (both and the log) | 'history'; for 'history' argv[2] = since, argv[3] = count.
-- Reply: {meta (flat hash), lines, wishlists, wish items (flat hash), events}; parts a mode does
-- not need are empty. For 'history', events are the log entries after `since`, and the first
-- retained revision is returned in meta as 'log_first'.

-- Loaded as a Redis Function next to the mutation code, or run as an EVAL script (scripts.py).

local function read(keys, argv)
  local K_META, K_LINES, K_WL, K_WLI, K_LOG = keys[1], keys[2], keys[3], keys[4], keys[5]
  local mode = argv[1]

  local meta = redis.call('HGETALL', K_META)
  local lines, wishlists, items, events = {}, {}, {}, {}

  if mode == 'cart' or mode == 'state' or mode == 'all' then
    lines = redis.call('HVALS', K_LINES)
  end
  if mode == 'wishlists' or mode == 'state' or mode == 'all' then
    wishlists = redis.call('HVALS', K_WL)
    items = redis.call('HGETALL', K_WLI)
  end
  if mode == 'all' then
    for i, entry in ipairs(redis.call('XRANGE', K_LOG, '-', '+')) do events[i] = entry[2][2] end
  end
  if mode == 'history' then
    local since = tonumber(argv[2])
    local first = redis.call('XRANGE', K_LOG, '-', '+', 'COUNT', 1)
    if first[1] then
      meta[#meta + 1] = 'log_first'
      meta[#meta + 1] = string.match(first[1][1], '^(%d+)')
    end
    local count = tonumber(argv[3])
    if count > 0 then -- XRANGE answers COUNT 0 with a null, not an empty list
      -- '%d', never tostring or '..': Lua writes 10^14 + 1 as '1e+14', an invalid stream id.
      local start = string.format('%d', since + 1) .. '-0'
      for i, entry in ipairs(redis.call('XRANGE', K_LOG, start, '+', 'COUNT', count)) do
        events[i] = entry[2][2]
      end
    end
  end

  return {meta, lines, wishlists, items, events}
end
