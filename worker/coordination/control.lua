-- Pause, resume or cancel a bulk, atomically against the workers that park its chunks.
-- KEYS: Keys.all() (meta first, then ..., parked, waking last). ARGV: op ('pause',
-- 'resume', 'cancel', or 'start': the resume of a bulk scheduled with --at, a no-op for
-- any other), now, lease (seconds the caller has to queue what it is handed),
-- the prefix of its chunk keys, the bulk id.
-- Returns {-1} for an unknown bulk, else {1 if it changed and 0 if not, then number, entry,
-- ...}: the chunks to queue again (entry: "retries:stamp").
-- Parked chunks are never deleted here: they move to `waking` in the same step that
-- clears the pause, and the caller removes each entry only once it has queued that chunk.
-- A caller killed in between (Ctrl-C, a kill, Redis away) leaves them there, and the bulk
-- in WAKING: once `waking_until` has passed, any worker's once-a-second sweep queues them
-- (bulk_control.wake_orphans).
local meta, parked, waking = KEYS[1], KEYS[#KEYS - 1], KEYS[#KEYS]
local op, now, lease, prefix, bulk_id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
if redis.call('EXISTS', meta) == 0 then return {-1} end
local f = redis.call(
  'HMGET', meta, 'cancelled_at', 'paused_at', 'finished_at', 'dry_run', 'scheduled_at')
local cancelled, paused, finished, dry, scheduled = f[1], f[2], f[3], f[4] == '1', f[5]

local function hand_out(out)
  local items = redis.call('HGETALL', parked)
  for i = 1, #items, 2 do
    -- A fresh stamp per hand-out: a caller's late HDEL of an older entry for the same
    -- chunk (re-parked and handed out again meanwhile) leaves this one alone.
    redis.call('HSET', waking, items[i], items[i + 1] .. ':' .. now)
  end
  redis.call('DEL', parked)
  local all = redis.call('HGETALL', waking)
  if #all > 0 then
    redis.call('HSET', meta, 'waking_until', tonumber(now) + lease)
    redis.call('SADD', WAKING, bulk_id)
  end
  for _, item in ipairs(all) do out[#out + 1] = item end
end

if op == 'pause' then
  if cancelled or finished or dry or paused then return {0} end
  redis.call('HSET', meta, 'paused_at', now)
  -- However long the pause lasts, nothing of the bulk expires (nothing of an unsettled
  -- bulk does; a bulk from before that rule may still carry a TTL).
  for _, key in ipairs(KEYS) do redis.call('PERSIST', key) end
  local chunks = tonumber(redis.call('HGET', meta, 'chunks') or '0')
  for n = 0, chunks - 1 do redis.call('PERSIST', prefix .. n) end
  return {1}
end
local out = {1}
if op == 'resume' then
  if cancelled or not paused then out[1] = 0 end
elseif op == 'cancel' then
  if cancelled or finished or dry then out[1] = 0 end
elseif op == 'start' then
  if cancelled or not paused or not scheduled then out[1] = 0 end
else
  return redis.error_reply('unknown op ' .. op)
end
if out[1] == 0 then
  -- Nothing to change; but chunks a resume left to queue (the bulk is no longer paused)
  -- are handed out again.
  if not paused then hand_out(out) end
  return out
end
if op == 'cancel' then
  redis.call('HSET', meta, 'cancelled_at', now)
  wv_cancelled(wv_keys(KEYS))  -- chunks of waves not started: run, they record cancelled
end
if paused then
  -- A scheduled bulk is a paused one until it starts: whatever ends the wait ends both.
  redis.call('HDEL', meta, 'paused_at', 'scheduled_at')
  -- Before the hand-out, so that a wave this starts (or resumes) is queued with the rest.
  if op ~= 'cancel' then wv_resumed(wv_keys(KEYS), now) end
end
if paused or op == 'cancel' then hand_out(out) end
return out
