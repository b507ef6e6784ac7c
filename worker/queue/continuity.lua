-- Did Redis lose its data since this worker's last look? Run once a second by the
-- heartbeat thread (continuity.py).
-- KEYS: the epoch key, the update counter. ARGV: the epoch this worker saw last ('' at
-- its first look), the highest counter value it saw, a fresh epoch, a margin (us).
-- The epoch is written once and never expires: gone or another means the data went
-- (a restart without persistence); a counter below one seen means writes went (a
-- failover to a replica that lagged). Either way the counter is put back above every
-- number seen, plus the margin for numbers handed out since the last look, and above
-- Redis's clock. Returns {epoch, counter, why} ('' when nothing was lost).
local epoch = redis.call('GET', KEYS[1])
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local highest = tonumber(ARGV[2])
local why = ''
if ARGV[1] ~= '' and epoch ~= ARGV[1] then
  why = epoch and 'its epoch key changed' or 'its epoch key is gone'
elseif counter < highest then
  why = 'the update counter went back'
end
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[1], epoch)
end
if why ~= '' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  counter = math.max(counter, highest + tonumber(ARGV[4]), now)
  redis.call('SET', KEYS[2], string.format('%d', counter))
end
return {epoch, string.format('%d', counter), why}
