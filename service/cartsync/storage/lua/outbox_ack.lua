-- The outcome of one delivery attempt of an owner's first queued event to one endpoint.
-- A stale lease (another worker took the owner over and moved on) changes nothing.
--
-- KEYS: outbox, owed, queue, ready, attempts. ARGV: owner, outbox id, 'done' or 'retry',
-- now_ms, next attempt ms (retry).
-- Reply: 0 for a stale lease; else 1, or 2 when the owner has more queued (due now).

local K_OUTBOX, K_OWED, K_QUEUE, K_READY, K_ATTEMPTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local owner, id, outcome, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local queued = redis.call('HGET', K_QUEUE, owner)
if not queued then return 0 end
local head, rest = string.match(queued, '^(%S+)%s*(.*)$')
if head ~= id then return 0 end

if outcome == 'retry' then
  local record = redis.call('HGET', K_ATTEMPTS, owner)
  local attempts, first = 0, now
  if record then attempts, first = string.match(record, '^(%d+)|(%d+)$') end
  redis.call('HSET', K_ATTEMPTS, owner, string.format('%d', tonumber(attempts) + 1) .. '|' .. first)
  redis.call('ZADD', K_READY, ARGV[5], owner)
  return 1
end

redis.call('HDEL', K_ATTEMPTS, owner)
if redis.call('HINCRBY', K_OWED, id, -1) <= 0 then
  redis.call('HDEL', K_OWED, id)
  redis.call('XDEL', K_OUTBOX, id)
end
if rest == '' then
  redis.call('HDEL', K_QUEUE, owner)
  redis.call('ZREM', K_READY, owner)
  return 1
end
redis.call('HSET', K_QUEUE, owner, rest)
redis.call('ZADD', K_READY, now, owner)
return 2
