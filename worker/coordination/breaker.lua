-- The shared breaker: add a process's counts, open when too many failed, and after the
-- cooldown let one probe through (half-open) before closing again.
-- KEYS: open_until, window hash, half_open flag, probe holder.
-- ARGV: ok, failed, window s, min calls, threshold, cooldown s, caller id.
-- Returns {pause seconds as a string (0: go), 1 if half-open, 1 if the caller may probe}.
-- Every time here is Redis's TIME: callers turn the pause into their own clock's terms.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ok, failed = tonumber(ARGV[1]), tonumber(ARGV[2])
local cooldown = tonumber(ARGV[6])

local function open()
  redis.call('SET', KEYS[1], string.format('%.6f', now + cooldown), 'EX', math.ceil(cooldown) + 1)
  redis.call('SET', KEYS[3], '1', 'EX', math.ceil(cooldown) * 10 + 60)
  redis.call('DEL', KEYS[2], KEYS[4])
  return {string.format('%.6f', cooldown), 1, 0}
end

local open_until = tonumber(redis.call('GET', KEYS[1]) or '0')
if open_until > now then return {string.format('%.6f', open_until - now), 1, 0} end

if redis.call('EXISTS', KEYS[3]) == 1 then
  if failed > 0 then return open() end
  if ok > 0 then
    redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
    return {'0', 0, 0}
  end
  local holder = redis.call('GET', KEYS[4])
  if not holder then
    redis.call('SET', KEYS[4], ARGV[7], 'PX', math.floor(cooldown * 1000) + 1000)
    holder = ARGV[7]
  end
  if holder == ARGV[7] then return {'0', 1, 1} end
  return {'0.5', 1, 0}
end

if ok > 0 then redis.call('HINCRBY', KEYS[2], 'ok', ok) end
if failed > 0 then redis.call('HINCRBY', KEYS[2], 'failed', failed) end
if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3])) end
local total_ok = tonumber(redis.call('HGET', KEYS[2], 'ok') or '0')
local total_failed = tonumber(redis.call('HGET', KEYS[2], 'failed') or '0')
local total = total_ok + total_failed
if total >= tonumber(ARGV[4]) and total_failed >= total * tonumber(ARGV[5]) then
  return open()
end
return {'0', 0, 0}
