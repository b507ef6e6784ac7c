-- Push a token's schedule past a 429's Retry-After.
-- KEYS[1] token schedule; ARGV[1] penalty in microseconds. Returns the wait in microseconds.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1])
local k = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = math.floor(tonumber(ARGV[1]) / 1000) + 60000
if until_ > k then
  redis.call('SET', KEYS[1], string.format('%d', until_), 'PX', ttl)
end
return until_ - now
