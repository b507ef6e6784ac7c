-- Record bulk rows' outcomes, each line at most once.
-- KEYS: meta, done, failures, rate, cancelled. ARGV: now, ttl, then (line, code, row-json
-- or '')*: the row's JSON goes to `failures` for a failed row, to `cancelled` for a
-- cancelled one.
-- Bumps the counters by what was new, and stamps finished_at when every line of a fully
-- submitted bulk has an outcome. The codes come from Python.
local meta, done, failures, rate, cancelled = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, ttl = ARGV[1], tonumber(ARGV[2])
local counts = {[SUCCEEDED] = 0, [FAILED] = 0, [UNCHANGED] = 0, [CANCELLED] = 0}
local added = 0
for i = 3, #ARGV, 3 do
  if redis.call('HSETNX', done, ARGV[i], ARGV[i + 1]) == 1 then
    counts[ARGV[i + 1]] = counts[ARGV[i + 1]] + 1
    added = added + 1
    if ARGV[i + 2] ~= '' then
      redis.call('RPUSH', ARGV[i + 1] == CANCELLED and cancelled or failures, ARGV[i + 2])
    end
  end
end
if counts[SUCCEEDED] > 0 then redis.call('HINCRBY', meta, 'succeeded', counts[SUCCEEDED]) end
if counts[FAILED] > 0 then redis.call('HINCRBY', meta, 'failed', counts[FAILED]) end
if counts[UNCHANGED] > 0 then redis.call('HINCRBY', meta, 'unchanged', counts[UNCHANGED]) end
if counts[CANCELLED] > 0 then redis.call('HINCRBY', meta, 'cancelled', counts[CANCELLED]) end
if added > 0 then
  redis.call('HINCRBY', rate, tostring(math.floor(tonumber(now))), added)
end
local total = redis.call('HGET', meta, 'total')
if total and redis.call('HLEN', done) >= tonumber(total) then
  redis.call('HSETNX', meta, 'finished_at', now)
end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl) end
return added
