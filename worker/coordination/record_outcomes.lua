-- Record bulk rows' outcomes, each line at most once.
-- KEYS: Keys.record_keys(), meta first. ARGV: now, ttl, then
-- (line, code, row-json or '')*: the row's JSON goes to `failures` for a failed row, to
-- `cancelled` for a cancelled one.
-- Bumps the counters by what was new, and stamps finished_at when every line of a fully
-- submitted bulk has an outcome: the bulk has settled, and if it asked to be notified its
-- id goes to the outbox in the same step, so a crash cannot lose the notification.
-- Nothing of a bulk expires before it settles, however slow, queued or paused it is: until
-- then its keys are kept (PERSIST). The step that settles it gives every key of the bulk,
-- its chunks included, a TTL of `ttl` seconds; later calls renew it. The codes come from
-- Python: a failed row of a kind (STALE, DRIFTED, INVALID) counts as failed and in its
-- kind's own field too.
-- A bulk with waves or --max-failures (waves.lua) may start its next wave, or stop
-- itself, in this step: it returns {added, settled, 1 if it paused the bulk, else 0}.
local meta, done, failures, rate, cancelled = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, ttl = ARGV[1], tonumber(ARGV[2])
-- A bulk with a timed revert (--revert-after) keeps its records until the revert is due
-- and their usual time after it.
local revert_after = redis.call('HGET', meta, 'revert_after')
if revert_after then ttl = ttl + math.ceil(tonumber(revert_after)) end
local wv = redis.call('HMGET', meta, 'seg', 'max_failures')
local wk = wv_keys(KEYS)
local counts = {[SUCCEEDED] = 0, [FAILED] = 0, [UNCHANGED] = 0, [CANCELLED] = 0}
local kinds = {[STALE] = 'stale', [DRIFTED] = 'drifted', [INVALID] = 'invalid'}
local of_kind = {}
local added = 0
for i = 3, #ARGV, 3 do
  -- One bit per line: a row recorded costs an eighth of a byte, whatever its outcome.
  if redis.call('SETBIT', done, ARGV[i], 1) == 0 then
    local code = ARGV[i + 1]
    local kind = kinds[code]
    if kind then
      of_kind[kind] = (of_kind[kind] or 0) + 1
      code = FAILED
    end
    counts[code] = counts[code] + 1
    added = added + 1
    if ARGV[i + 2] ~= '' then
      redis.call('RPUSH', code == CANCELLED and cancelled or failures, ARGV[i + 2])
      if wv[2] and code == FAILED and kind ~= 'stale' then
        -- Counted by its kind, the exception's name before the first colon.
        local reason = tostring(cjson.decode(ARGV[i + 2]).reason or '?')
        local name = string.match(reason, '^([%w_%.]+):') or string.sub(reason, 1, 60)
        redis.call('HINCRBY', wk.reasons, name, 1)
      end
    end
  end
end
for _, kind in ipairs({'stale', 'drifted', 'invalid'}) do
  if of_kind[kind] then redis.call('HINCRBY', meta, kind, of_kind[kind]) end
end
if counts[SUCCEEDED] > 0 then redis.call('HINCRBY', meta, 'succeeded', counts[SUCCEEDED]) end
if counts[FAILED] > 0 then redis.call('HINCRBY', meta, 'failed', counts[FAILED]) end
if counts[UNCHANGED] > 0 then redis.call('HINCRBY', meta, 'unchanged', counts[UNCHANGED]) end
if counts[CANCELLED] > 0 then redis.call('HINCRBY', meta, 'cancelled', counts[CANCELLED]) end
local recorded = tonumber(redis.call('HGET', meta, 'recorded') or '0')
if added > 0 then
  redis.call('HINCRBY', rate, tostring(math.floor(tonumber(now))), added)
  recorded = redis.call('HINCRBY', meta, 'recorded', added)
end
local settled = 0
local total = redis.call('HGET', meta, 'total')
if total and recorded >= tonumber(total) then
  settled = redis.call('HSETNX', meta, 'finished_at', now)
  if settled == 1 then
    -- Nothing is left to pause.
    redis.call('HDEL', meta, 'paused_at')
    if redis.call('HEXISTS', meta, 'notify') == 1 then
      redis.call('SADD', OUTBOX, string.match(meta, '{(.*)}'))
    end
    -- Its timed revert is due `revert_after` seconds from now (Redis's clock), if it may
    -- have changed anything; in this same step, so that no crash can lose it.
    if revert_after and redis.call('HLEN', KEYS[6]) > 0 then
      local t = redis.call('TIME')
      local due_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        + math.floor(tonumber(revert_after) * 1000)
      redis.call('HSET', meta, 'revert_at', string.format('%.3f', due_ms / 1000))
      redis.call('ZADD', SCHEDULE, due_ms, 'revert:' .. string.match(meta, '{(.*)}'))
    end
  end
end
local stopped = 0
if wv[1] or wv[2] then
  stopped = wv_guard(wk, now)
  wv_advance(wk, now)
end
if redis.call('HEXISTS', meta, 'finished_at') == 0 then
  for _, key in ipairs(KEYS) do redis.call('PERSIST', key) end
  return {added, settled, stopped}
end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl) end
if settled == 1 then
  -- Every line has its outcome: a chunk's lines (KEYS[8]) serve no more.
  redis.call('DEL', KEYS[8])
  -- Chunks still stored (a lost or cancelled run's) go with the rest.
  local chunks = tonumber(redis.call('HGET', meta, 'chunks') or '0')
  for n = 0, chunks - 1 do redis.call('EXPIRE', meta .. ':chunk:' .. n, ttl) end
end
return {added, settled, stopped}
