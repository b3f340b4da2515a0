-- What a restore is planned from, read atomically (storage/support.py): the revision, epoch and
-- note, the cart and wishlists now, and the whole log with the state snapshots some entries
-- carry (restore.lua). Reply: {rev, epoch, note, lines, wishlists, items (flat hash),
-- {{entry id, event, snapshot or ''}, ...}}.

local K_META, K_LINES, K_WL, K_WLI, K_LOG = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local meta = redis.call('HMGET', K_META, 'rev', 'epoch', 'note')
local entries = {}
for i, entry in ipairs(redis.call('XRANGE', K_LOG, '-', '+')) do
  local fields, snapshot = entry[2], ''
  for j = 1, #fields, 2 do
    if fields[j] == 's' then snapshot = fields[j + 1] end
  end
  entries[i] = {entry[1], fields[2], snapshot}
end
return {meta[1] or '0', meta[2] or '', meta[3] or '', redis.call('HVALS', K_LINES),
  redis.call('HVALS', K_WL), redis.call('HGETALL', K_WLI), entries}
