-- Pause, resume or cancel a bulk, atomically against the workers that park its chunks.
-- KEYS: Keys.all() (meta first, parked last). ARGV: op ('pause', 'resume' or 'cancel'),
-- now, ttl, the prefix of its chunk keys.
-- Returns {-1} for an unknown bulk, else {1 if it changed and 0 if not, then number, retries,
-- ...}: the chunks parked by the pause, for the caller to queue again.
local meta, parked = KEYS[1], KEYS[#KEYS]
local op, now, ttl, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
if redis.call('EXISTS', meta) == 0 then return {-1} end
local f = redis.call('HMGET', meta, 'cancelled_at', 'paused_at', 'finished_at', 'dry_run')
local cancelled, paused, finished, dry = f[1], f[2], f[3], f[4] == '1'

local function every_key(command)
  for _, key in ipairs(KEYS) do redis.call(command, key, ttl) end
  local chunks = tonumber(redis.call('HGET', meta, 'chunks') or '0')
  for n = 0, chunks - 1 do redis.call(command, prefix .. n, ttl) end
end

if op == 'pause' then
  if cancelled or finished or dry or paused then return {0} end
  redis.call('HSET', meta, 'paused_at', now)
  -- However long the pause lasts, nothing of the bulk expires.
  for _, key in ipairs(KEYS) do redis.call('PERSIST', key) end
  local chunks = tonumber(redis.call('HGET', meta, 'chunks') or '0')
  for n = 0, chunks - 1 do redis.call('PERSIST', prefix .. n) end
  return {1}
end
local out = {1}
if op == 'resume' then
  if cancelled or not paused then out[1] = 0 end
elseif op == 'cancel' then
  if cancelled or finished or dry then out[1] = 0 end
else
  return redis.error_reply('unknown op ' .. op)
end
if out[1] == 0 then
  -- Nothing to change; but chunks left parked by a resume whose queueing failed (the bulk
  -- is no longer paused) are handed out again.
  if not paused then
    for _, item in ipairs(redis.call('HGETALL', parked)) do out[#out + 1] = item end
    redis.call('DEL', parked)
  end
  return out
end
if op == 'cancel' then redis.call('HSET', meta, 'cancelled_at', now) end
if paused then
  redis.call('HDEL', meta, 'paused_at')
  for _, item in ipairs(redis.call('HGETALL', parked)) do out[#out + 1] = item end
  redis.call('DEL', parked)
  every_key('EXPIRE')
end
return out
