-- A chunk handed out by control.lua or wake_take.lua is queued: drop its `waking` entry,
-- unless it is a newer one (the chunk was parked and handed out again meanwhile).
-- KEYS: waking. ARGV: chunk number, the entry as handed out.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
