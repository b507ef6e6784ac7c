-- KEYS[1]: an idempotency key. ARGV: op, id, lease (ms), ttl (s).
-- The key holds "c:<id>:<deadline ms>" while its first caller queues the work (a claim,
-- renewed while a bulk streams), then "<id>" once the work is queued. A claim whose
-- deadline passed belongs to a caller that died (or lost Redis) before queueing: the
-- next caller takes it over. Deadlines use Redis's clock, never a host's.
local op, id, lease, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('GET', KEYS[1])
local claimant, deadline
if held then
  claimant, deadline = string.match(held, '^c:(.*):(%d+)$')
end
local claim = 'c:' .. id .. ':' .. (now + lease)

if op == 'claim' then
  if not held then
    redis.call('SET', KEYS[1], claim, 'EX', ttl)
    return {'new', id}
  end
  if not claimant then
    return {'done', held}
  end
  if now < tonumber(deadline) then
    return {'busy', claimant}
  end
  redis.call('SET', KEYS[1], claim, 'EX', ttl)
  return {'takeover', claimant}
end

-- The other ops act only on the caller's own claim.
if claimant ~= id then
  return {'lost', held or ''}
end
if op == 'renew' then
  redis.call('SET', KEYS[1], claim, 'EX', ttl)
elseif op == 'settle' then
  redis.call('SET', KEYS[1], id, 'EX', ttl)
elseif op == 'drop' then
  redis.call('DEL', KEYS[1])
end
return {'ok', id}
