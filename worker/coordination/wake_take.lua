-- The sweep of a bulk in WAKING: hand out its `waking` chunks once the resumer (or
-- canceller) that was to queue them has let its lease lapse.
-- KEYS: meta, waking. ARGV: now, lease, bulk id.
-- Returns {} (nothing to do now) or {number, entry, ...}: the chunks to queue.
local meta, waking = KEYS[1], KEYS[2]
local now, lease, bulk_id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local f = redis.call('HMGET', meta, 'finished_at', 'paused_at', 'waking_until')
if redis.call('EXISTS', meta) == 0 or f[1] or redis.call('HLEN', waking) == 0 then
  -- Settled (no row is left to send), gone, or every chunk queued: done with it.
  if f[1] or redis.call('EXISTS', meta) == 0 then redis.call('DEL', waking) end
  redis.call('SREM', WAKING, bulk_id)
  return {}
end
if f[2] then return {} end  -- paused again: the next resume or cancel hands them out
if f[3] and tonumber(f[3]) > now then return {} end  -- its resumer is still at it
redis.call('HSET', meta, 'waking_until', now + lease)
return redis.call('HGETALL', waking)
