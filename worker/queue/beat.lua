-- The heartbeat of one worker instance, refused once it was reaped: a reaped instance
-- never beats again (it goes on under a new one), so it is never seen alive as a ghost.
-- KEYS: heartbeat, instances hash, reaped mark, nodes hash.
-- ARGV: instance, heartbeat ttl ms, the instance's JSON record, node name ('' for none).
-- Returns 1 for a beat, 0 when the instance is marked reaped.
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[4], ARGV[4], ARGV[1]) end
return 1
