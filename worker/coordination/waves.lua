-- Waves and the automatic stop (coordination/waves.py): functions that record_outcomes.lua,
-- control.lua and wave_chunk.lua include, so that a wave starts, and a bulk stops itself,
-- in the same Lua step that records the outcome deciding it.
--
-- The rows of a bulk with waves are cut into segments: one per wave, and, with
-- --max-failures, the first `min_sample` rows in one of their own (so that no more are
-- in flight until they settled). The chunks of a segment not started yet wait in `held`
-- (chunk number -> segment); nothing runs them. Fields of the bulk's meta hash:
--   seg, segs       the last segment started (1-based), and how many there are
--   seg_end:K       rows queued in segments 1..K, written once the producer queued them all
--   seg_wave:K      the wave of segment K; wave_ended:W when wave W settled
--   wave, waves     what status shows: the wave running (or the last one run), how many
--   wave_pause      '1': pause when a wave but the last ended
--   max_failures    the threshold as typed; fail_rows or fail_pct; min_sample
--   base_recorded, base_failed   the counts when the sample started (the last resume)
--   paused_reason   why the bulk paused itself
-- `k` is {meta, held, reasons, parked, waking}; `now` the caller's clock.

local function wv_keys(all)
  -- Keys.all(): held and reasons come just before parked and waking, which end it.
  local n = #all
  return {meta = all[1], held = all[n - 3], reasons = all[n - 2], parked = all[n - 1],
          waking = all[n]}
end

local function wv_pause(meta, now, reason)
  redis.call('HSET', meta, 'paused_at', now, 'paused_reason', reason)
  if redis.call('HEXISTS', meta, 'notify') == 1 then
    redis.call('SADD', OUTBOX, string.match(meta, '{(.*)}'))
  end
end

-- Let the held chunks of segments up to `seg` run: to `parked` while the bulk is paused
-- (the resume queues them), else to `waking`, queued by the worker that recorded this
-- step or, failing it, by any worker's once-a-second tick (bulk_control.wake_orphans).
local function wv_release(k, seg, now)
  local items = redis.call('HGETALL', k.held)
  if #items == 0 then return end
  local paused = redis.call('HEXISTS', k.meta, 'paused_at') == 1
  local idle = redis.call('HLEN', k.waking) == 0
  local moved = 0
  for i = 1, #items, 2 do
    if tonumber(items[i + 1]) <= seg then
      if paused then
        redis.call('HSET', k.parked, items[i], 0)
      else
        redis.call('HSET', k.waking, items[i], '0:' .. now)
      end
      redis.call('HDEL', k.held, items[i])
      moved = moved + 1
    end
  end
  if moved > 0 and not paused then
    -- No resumer is queueing (idle): the next sweep need not wait for a lease.
    if idle then redis.call('HSET', k.meta, 'waking_until', 0) end
    redis.call('SADD', WAKING, string.match(k.meta, '{(.*)}'))
  end
end

local function wv_top_reasons(reasons)
  local items = redis.call('HGETALL', reasons)
  local list = {}
  for i = 1, #items, 2 do list[#list + 1] = {items[i], tonumber(items[i + 1])} end
  table.sort(list, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] < b[1]
  end)
  local parts = {}
  for i = 1, math.min(3, #list) do parts[#parts + 1] = list[i][1] .. ' (' .. list[i][2] .. ')' end
  return table.concat(parts, ', ')
end

-- Pause the bulk when the rows failed since the sample started exceed --max-failures,
-- once `min_sample` rows settled. Returns 1 when this step paused it.
local function wv_guard(k, now)
  local f = redis.call('HMGET', k.meta, 'max_failures', 'fail_rows', 'fail_pct', 'min_sample',
    'recorded', 'failed', 'stale', 'base_recorded', 'base_failed', 'paused_at', 'cancelled_at',
    'finished_at')
  if not f[1] or f[10] or f[11] or f[12] then return 0 end
  local settled = tonumber(f[5] or '0') - tonumber(f[8] or '0')
  -- Stale rows failed on purpose (the plan was out of date), not because of the change.
  local failed = tonumber(f[6] or '0') - tonumber(f[7] or '0') - tonumber(f[9] or '0')
  if settled < tonumber(f[4]) then return 0 end
  local over
  if f[2] then over = failed > tonumber(f[2]) else over = failed * 100 > tonumber(f[3]) * settled end
  if not over then return 0 end
  wv_pause(k.meta, now, string.format(
    'stopped: %d of %d settled rows failed, more than --max-failures %s; reasons: %s',
    failed, settled, f[1], wv_top_reasons(k.reasons)))
  return 1
end

-- Start each next segment once every row queued before it has its outcome (a row refused
-- at submission has one at once). A wave's end pauses a bulk with --wave-pause.
local function wv_advance(k, now)
  local f = redis.call('HMGET', k.meta, 'seg', 'segs', 'recorded', 'invalid', 'cancelled_at',
    'finished_at', 'wave_pause', 'waves')
  if not f[1] or f[5] or f[6] then return end
  local seg, segs = tonumber(f[1]), tonumber(f[2])
  -- Rows recorded other than those refused at submission: all queued ones, since a held
  -- chunk runs only once its segment started.
  local sent = tonumber(f[3] or '0') - tonumber(f[4] or '0')
  while seg < segs do
    local ended = redis.call('HGET', k.meta, 'seg_end:' .. seg)
    if not ended or sent < tonumber(ended) then return end
    local wave = redis.call('HGET', k.meta, 'seg_wave:' .. seg)
    local next_wave = redis.call('HGET', k.meta, 'seg_wave:' .. (seg + 1))
    seg = seg + 1
    redis.call('HSET', k.meta, 'seg', seg)
    if wave ~= next_wave then
      redis.call('HSET', k.meta, 'wave_ended:' .. wave, now)
      if f[7] == '1' and redis.call('HEXISTS', k.meta, 'paused_at') == 0 then
        wv_pause(k.meta, now, string.format(
          'wave %s of %s ended; voicemail bulk resume starts wave %s', wave, f[8], next_wave))
      end
    end
    local paused = redis.call('HEXISTS', k.meta, 'paused_at') == 1
    if not paused then redis.call('HSET', k.meta, 'wave', next_wave) end
    wv_release(k, seg, now)
    if paused then return end  -- the resume goes on from here
  end
end

-- The bulk's pause was lifted: the wave it released runs, the failure count and sample
-- start again, and segments that settled meanwhile (or had nothing to send) move on.
local function wv_resumed(k, now)
  local f = redis.call('HMGET', k.meta, 'seg', 'recorded', 'failed', 'stale', 'max_failures')
  redis.call('HDEL', k.meta, 'paused_reason')
  if f[1] then
    redis.call('HSET', k.meta, 'wave', redis.call('HGET', k.meta, 'seg_wave:' .. f[1]))
  end
  if f[5] then
    local failed = tonumber(f[3] or '0') - tonumber(f[4] or '0')
    redis.call('HSET', k.meta, 'base_recorded', f[2] or '0', 'base_failed', failed)
    redis.call('DEL', k.reasons)
  end
  wv_advance(k, now)
end

-- A cancel: every held chunk goes to `parked`, for the cancel to hand out with the rest;
-- run, each records its rows as cancelled.
local function wv_cancelled(k)
  local items = redis.call('HGETALL', k.held)
  for i = 1, #items, 2 do redis.call('HSET', k.parked, items[i], 0) end
  redis.call('DEL', k.held)
end
