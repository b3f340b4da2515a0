-- One partition's share of a worker's poll, atomically: fan new outbox entries out to the
-- endpoints' per-owner queues, lease owners whose next delivery is due, lease due deadlines.
--
-- Fan-out reads the outbox through the consumer group `fanout` and acknowledges in the same
-- script, so an entry is never left half fanned out; order per owner is the outbox's order.
-- A lease moves the owner's (or deadline's) score to now + lease: a worker that dies holding
-- it loses it when that time passes, and another worker takes it over.
--
-- KEYS: outbox, owed, deadlines, then per endpoint: queue, ready, attempts.
-- ARGV: consumer, now_ms, lease_ms, fan-out batch, endpoints JSON [{types = {t = true} or
-- absent for every type, off = gone, take = owners to lease}], deadlines to lease.
-- Reply: {fanned out, {per endpoint: {owner, outbox id, event or '', attempts record}...},
-- {deadline member, lease score}..., when anything is next due (ms) or -1}.

local K_OUTBOX, K_OWED, K_DUE = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[2])
local lease_until = now + tonumber(ARGV[3])
local endpoints = cjson.decode(ARGV[5])

local function int(n)
  return string.format('%d', n)
end

local fanned = 0
local endpoints_for_entry = endpoints
if redis.call('EXISTS', K_OUTBOX) == 1 then
  redis.pcall('XGROUP', 'CREATE', K_OUTBOX, 'fanout', '0')  -- BUSYGROUP once it exists
  local got = redis.call('XREADGROUP', 'GROUP', 'fanout', ARGV[1], 'COUNT', ARGV[4],
    'STREAMS', K_OUTBOX, '>')
  if got then
    for _, entry in ipairs(got[1][2]) do
      local id, fields = entry[1], entry[2]
      local owner, type, replay = '', '', false
      for i = 1, #fields, 2 do
        if fields[i] == 'o' then owner = fields[i + 1] elseif fields[i] == 't' then type = fields[i + 1] end
        if fields[i] == 'r' then replay = true end
      end
      -- A replayed entry (field r) was queued for its one endpoint when it was written.
      if replay then endpoints_for_entry = {} else endpoints_for_entry = endpoints end
      local owed = 0
      for i, ep in ipairs(endpoints_for_entry) do
        if not ep.off and (ep.types == nil or ep.types[type]) then
          local k_queue, k_ready = KEYS[1 + 3 * i], KEYS[2 + 3 * i]
          local queued = redis.call('HGET', k_queue, owner)
          if queued then
            redis.call('HSET', k_queue, owner, queued .. ' ' .. id)
          else
            redis.call('HSET', k_queue, owner, id)
            redis.call('ZADD', k_ready, 'NX', now, owner)
          end
          owed = owed + 1
        end
      end
      redis.call('XACK', K_OUTBOX, 'fanout', id)
      if replay then
        -- owed was counted by the replay
      elseif owed > 0 then
        redis.call('HSET', K_OWED, id, owed)
      else
        redis.call('XDEL', K_OUTBOX, id)
      end
      fanned = fanned + 1
    end
  end
end

local leased = {}
for i, ep in ipairs(endpoints) do
  local k_queue, k_ready, k_attempts = KEYS[1 + 3 * i], KEYS[2 + 3 * i], KEYS[3 + 3 * i]
  local out = {}
  if ep.take > 0 then
    for _, owner in ipairs(redis.call('ZRANGEBYSCORE', k_ready, '-inf', now, 'LIMIT', 0, ep.take)) do
      local queued = redis.call('HGET', k_queue, owner)
      if not queued then
        redis.call('ZREM', k_ready, owner)
      else
        local head = string.match(queued, '^(%S+)')
        local found = redis.call('XRANGE', K_OUTBOX, head, head)
        local event = ''
        if found[1] then
          local fields = found[1][2]
          for j = 1, #fields, 2 do
            if fields[j] == 'e' then event = fields[j + 1] end
          end
        end
        redis.call('ZADD', k_ready, 'XX', lease_until, owner)
        out[#out + 1] = {owner, head, event, redis.call('HGET', k_attempts, owner) or ''}
      end
    end
  end
  leased[i] = out
end

local deadlines = {}
local limit = tonumber(ARGV[6])
if limit > 0 then
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', K_DUE, '-inf', now, 'LIMIT', 0, limit)) do
    redis.call('ZADD', K_DUE, 'XX', lease_until, member)
    deadlines[#deadlines + 1] = {member, int(lease_until)}
  end
end

-- When anything in the partition is next due (a deadline, a retry, a lease running out), so
-- the worker comes back then rather than on its next sweep.
local next_due = tonumber(redis.call('ZRANGE', K_DUE, 0, 0, 'WITHSCORES')[2] or '-1')
for i = 1, #endpoints do
  local first = tonumber(redis.call('ZRANGE', KEYS[2 + 3 * i], 0, 0, 'WITHSCORES')[2] or '-1')
  if first >= 0 and (next_due < 0 or first < next_due) then next_due = first end
end
next_due = int(next_due)

return {fanned, leased, deadlines, next_due}
