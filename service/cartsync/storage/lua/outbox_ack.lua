-- The outcome of one delivery attempt of an owner's first queued event to one endpoint.
-- A stale lease (another worker took the owner over and moved on) changes nothing.
--
-- KEYS: outbox, owed, queue, ready, attempts. ARGV: owner, outbox id, 'done', 'retry' or 'release',
-- now_ms, next attempt ms (retry), and for 'done' a lease end (ms) or 0.
-- Reply: 0 for a stale lease; 1 recorded; {2, next outbox id, its event} when the owner has
-- more queued: leased to the caller until the lease end, or due now when that is 0.

local K_OUTBOX, K_OWED, K_QUEUE, K_READY, K_ATTEMPTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local owner, id, outcome, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local queued = redis.call('HGET', K_QUEUE, owner)
if not queued then return 0 end
local head, rest = string.match(queued, '^(%S+)%s*(.*)$')
if head ~= id then return 0 end

if outcome == 'release' then  -- not attempted: due again now, for whichever worker polls first
  redis.call('ZADD', K_READY, now, owner)
  return 1
end

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
local lease_until = tonumber(ARGV[6] or '0')
if lease_until == 0 then
  redis.call('ZADD', K_READY, now, owner)
  return {2, '', ''}
end
-- The same worker goes on with the owner's next event, without waiting for a poll.
redis.call('ZADD', K_READY, lease_until, owner)
local next_id = string.match(rest, '^(%S+)')
local found = redis.call('XRANGE', K_OUTBOX, next_id, next_id)
local event = ''
if found[1] then
  local fields = found[1][2]
  for j = 1, #fields, 2 do
    if fields[j] == 'e' then event = fields[j + 1] end
  end
end
return {2, next_id, event}
