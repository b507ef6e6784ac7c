-- The producer's side of waves (waves.lua): hold a chunk until its segment starts, or
-- close a segment once all its chunks are queued.
-- KEYS: Keys.all(). ARGV: 'hold', chunk number, its segment: returns 1 when held, 0 when
-- the caller is to queue it now (its segment started, or the bulk is cancelled);
-- or 'close', segment, rows queued in segments 1..it, now: returns 0.
local k = wv_keys(KEYS)
if ARGV[1] == 'hold' then
  local f = redis.call('HMGET', k.meta, 'seg', 'cancelled_at')
  if f[2] or not f[1] or tonumber(ARGV[3]) <= tonumber(f[1]) then return 0 end
  redis.call('HSET', k.held, ARGV[2], ARGV[3])
  return 1
end
redis.call('HSET', k.meta, 'seg_end:' .. ARGV[2], ARGV[3])
-- Its rows may all have settled before this: start what follows now.
wv_advance(k, ARGV[4])
return 0
