-- A worker received a job: its queue has been read up to that job's publish time, as
-- this app recorded it on Redis's clock. A job it did not publish (sent by name) moves
-- nothing: no header a sender sets is trusted.
-- KEYS: received-through zset, published-at zset. ARGV: queue, job id.
local at = redis.call('ZSCORE', KEYS[2], ARGV[2])
if at then redis.call('ZADD', KEYS[1], 'GT', at, ARGV[1]) end
return 1
