-- Consent: staff access to this owner's data, started by a claimed hand-off code.
function ops.grant_start()
  local e = guard()
  if e then return nil, e end
  local gj = cjson.encode(p.grant)
  redis.call('HSET', K_GRANTS, p.grant.id, gj)
  fresh(K_GRANTS)
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
