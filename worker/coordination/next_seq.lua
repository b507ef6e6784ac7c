-- Hand out update numbers from one global counter that never goes back: it starts from
-- Redis's clock in microseconds, so losing the key cannot restart it below old numbers.
-- KEYS[1] counter, KEYS[2] (optional) a job's pin. ARGV: count, pin ttl s.
-- Returns the first of `count` new numbers as a string, or the number already pinned.
if KEYS[2] then
  local pinned = redis.call('GET', KEYS[2])
  if pinned then return pinned end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if last < now then last = now end
local count = tonumber(ARGV[1])
local first = string.format('%d', last + 1)
redis.call('SET', KEYS[1], string.format('%d', last + count))
if KEYS[2] then redis.call('SET', KEYS[2], first, 'EX', tonumber(ARGV[2])) end
return first
