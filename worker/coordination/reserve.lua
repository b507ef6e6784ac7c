-- Reserve the next free slot of the global and the token schedule (GCRA, no burst).
-- KEYS[1] global schedule, KEYS[2] token schedule.
-- ARGV[1] global interval us (0: no global limit), ARGV[2] token interval us (0: none).
-- Returns microseconds to wait until the reserved slot.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local g_int, k_int = tonumber(ARGV[1]), tonumber(ARGV[2])
local slot = now
local k = tonumber(redis.call('GET', KEYS[2]) or '0')
if k > slot then slot = k end
if g_int > 0 then
  local g = tonumber(redis.call('GET', KEYS[1]) or '0')
  if g > slot then slot = g end
end
local ttl = 60000 + math.floor((slot - now) / 1000)
if g_int > 0 then
  redis.call('SET', KEYS[1], string.format('%d', slot + g_int), 'PX', ttl)
end
if k_int > 0 then
  redis.call('SET', KEYS[2], string.format('%d', slot + k_int), 'PX', ttl)
end
return slot - now
