-- Record the deliveries a worker instance holds and read back all it recorded, unless it
-- was reaped: a reaper already gave them back, and tags recorded under a reaped instance
-- would be given back by nobody (the instance is reaped once). The heartbeat thread goes
-- on under a new instance; the next tick records them there.
-- KEYS: the held set, the reaped mark. ARGV: tags. Returns the recorded tags, or false.
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
-- In slices: unpack() of tens of thousands of arguments overflows Lua's stack.
for i = 1, #ARGV, 5000 do
  redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 4999, #ARGV)))
end
return redis.call('SMEMBERS', KEYS[1])
