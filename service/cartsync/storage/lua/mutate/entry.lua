-- The dispatcher, mutate(keys, argv): erasure and merge claims, idempotent replay, the chosen
-- operation, then the revision, the log, the publish, the idempotency record and the expiries
-- (renewed when due, prelude.lua). Every call starts by setting the call's state (begin()).

local function mutate(keys, argv)
  ev_begin(keys, argv)
  rs_begin(argv)
  begin(keys, argv)

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

  -- A record is '<status>|<rev>|<length of the fingerprint>|<fingerprint><body>', joined and cut
  -- without cjson (records from before this format are JSON objects, read until they expire).
  local prior = redis.call('HGET', K_IDEM, op_id)
  if prior then
    local status, at_rev, fp, body
    if string.sub(prior, 1, 1) == '{' then
      local rec = cjson.decode(prior)
      status, at_rev, fp, body = rec.status, rec.rev, rec.fp, rec.body
    else
      local n, at
      status, at_rev, n, at = string.match(prior, '^(%d+)|(%d+)|(%d+)|()')
      fp = string.sub(prior, at, at + tonumber(n) - 1)
      body = string.sub(prior, at + tonumber(n))
    end
    if fp ~= fingerprint then
      return err('idempotency_key_reused', 'this Idempotency-Key was first used for a different request', 'Idempotency-Key')
    end
    return {tonumber(status), tonumber(at_rev), body, 1}
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
    -- The revision read at the start is the stored one (the script runs alone): one write.
    rev = rev + 1
    redis.call('HSET', K_META, 'rev', int(rev), 'updated_at', now)
    local event = '{"rev":' .. int(rev) .. ',"type":"' .. res.type .. '","data":' .. res.data
      .. ',"actor":' .. actor_json .. ',"at":"' .. now .. '","epoch":"' .. epoch .. '"}'
    rs_append(K_LOG, K_META, K_LINES, K_WL, K_WLI, log_max, rev, event, head[3])
    if publish ~= '' then redis.call(publish, K_CHAN, event) end
    -- The deadlines count from the lifetime the keys have once this change is done.
    ev_after_change(res, rev, epoch, owner, now, now_ms, life_ms)
  end

  local parts = {'"rev":' .. int(rev)}
  for _, kv in ipairs(res.body) do parts[#parts + 1] = '"' .. kv[1] .. '":' .. kv[2] end
  local body = '{' .. table.concat(parts, ',') .. '}'

  -- Expired records go in batches every 8th revision: up to 4 per change, one comes per change.
  if rev % 8 == 0 then
    local stale = redis.call('ZRANGEBYSCORE', K_IDEMX, '-inf', now_ms, 'LIMIT', 0, 32)
    if #stale > 0 then
      redis.call('HDEL', K_IDEM, unpack(stale))
      redis.call('ZREM', K_IDEMX, unpack(stale))
      -- Emptied keys are gone: the writes below may create them again.
      fresh(K_IDEM)
      fresh(K_IDEMX)
    end
  end
  redis.call('HSET', K_IDEM, op_id,
    int(res.status) .. '|' .. int(rev) .. '|' .. int(#fingerprint) .. '|' .. fingerprint .. body)
  redis.call('ZADD', K_IDEMX, now_ms + op_ttl_ms, op_id)

  if renew then
    for _, key in ipairs({K_META, K_LINES, K_LIDX, K_WL, K_WLI, K_WIDX, K_LOG, K_IDEM, K_IDEMX, K_GRANTS}) do
      redis.call('PEXPIRE', key, owner_ttl_ms)
    end
  else
    for key in pairs(created) do redis.call('PEXPIRE', key, life_left) end
  end

  return {res.status, rev, body, 0}
end
