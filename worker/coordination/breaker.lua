-- Add a process's counts to the shared window; open the breaker when too many failed.
-- KEYS: open_until, window hash. ARGV: ok, failed, window s, min calls, threshold, cooldown s.
-- Returns open_until as a string ('0' when closed).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local open_until = tonumber(redis.call('GET', KEYS[1]) or '0')
if open_until > now then return tostring(open_until) end
local ok, failed = tonumber(ARGV[1]), tonumber(ARGV[2])
if ok > 0 then redis.call('HINCRBY', KEYS[2], 'ok', ok) end
if failed > 0 then redis.call('HINCRBY', KEYS[2], 'failed', failed) end
if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3])) end
local total_ok = tonumber(redis.call('HGET', KEYS[2], 'ok') or '0')
local total_failed = tonumber(redis.call('HGET', KEYS[2], 'failed') or '0')
local total = total_ok + total_failed
if total >= tonumber(ARGV[4]) and total_failed >= total * tonumber(ARGV[5]) then
  open_until = now + tonumber(ARGV[6])
  redis.call('SET', KEYS[1], tostring(open_until), 'EX', math.ceil(tonumber(ARGV[6])) + 1)
  -- a fresh window after the pause: old failures must not reopen it at once
  redis.call('DEL', KEYS[2])
  return tostring(open_until)
end
return '0'
