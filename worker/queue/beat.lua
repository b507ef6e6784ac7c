-- The heartbeat of one worker instance, refused once it was reaped: a reaped instance
-- never beats again (it goes on under a new one), so it is never seen alive as a ghost.
-- Each beat also records when it was, on Redis's clock: a reaper tells from it whether
-- the instance beat in this Redis's life (lapsed since: dead) or only before a restart.
-- KEYS: heartbeat, instances hash, reaped mark, nodes hash, last-beat hash.
-- ARGV: instance, heartbeat ttl ms, the instance's JSON record, node name ('' for none).
-- Returns 1 for a beat, 0 when the instance is marked reaped.
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local t = redis.call('TIME')
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[5], ARGV[1], t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)))
if ARGV[4] ~= '' then redis.call('HSET', KEYS[4], ARGV[4], ARGV[1]) end
return 1
