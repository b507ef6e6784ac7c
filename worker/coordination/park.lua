-- Park a chunk of a paused bulk: it waits in Redis, not in a worker, until the resume
-- (or a cancel) queues it again with the retries it had spent.
-- KEYS: meta, parked, the chunk. ARGV: chunk number, retries.
-- Returns 1 when parked, 0 when the bulk is not paused (any more): run the chunk.
local f = redis.call('HMGET', KEYS[1], 'paused_at', 'cancelled_at', 'finished_at')
if not f[1] or f[2] or f[3] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PERSIST', KEYS[2])
redis.call('PERSIST', KEYS[3])
return 1
