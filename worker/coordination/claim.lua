-- Claim accounts for updates, in one call.
-- KEYS: one lock hash per account (`{account}` in its name). ARGV: owner, lock ttl ms, straggler window ms,
-- ordering ttl s, then one seq per account. Returns one verdict per account (CLAIMED,
-- SUPERSEDED, APPLIED, LOCKED, UNSURE, EXPIRED or NOT_ISSUED). Numbers stay strings when written: Lua
-- would print a 16-digit number as 1.7e+15.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local owner, ttl, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ordering_ttl = tonumber(ARGV[4])
local days = applied_days(tonumber(t[1]), ordering_ttl)
-- No number above the last one handed out was ever issued (next_seq.lua). Should the
-- counter be lost, numbers restart from the clock: allow an hour ahead of it then.
local last_issued = tonumber(redis.call('GET', SEQ_KEY) or '0')
if last_issued == 0 then last_issued = now_us + 3600 * 1000000 end

-- When the holder's worker instance was found dead (ms, Redis TIME), or nil.
local function dead_since(holder)
  local instance = string.match(holder, '^([^:]+):')
  if not instance then return nil end
  local at = redis.call('GET', REAPED_PREFIX .. instance)
  return at and tonumber(at) or nil
end

local out = {}
if dead_since(owner) then
  -- Its worker was found dead and its messages given back (a partition, say): whatever it
  -- claimed before, it sends nothing more.
  for i = 1, #KEYS do out[i] = LOCKED end
  return out
end
for i = 1, #KEYS do
  local seq = ARGV[4 + i]
  local state = redis.call('HMGET', KEYS[i], 'o', 'x', 'c', 'w')
  local applied = applied_of(account_of(KEYS[i]), days)
  if tonumber(seq) > last_issued then
    out[i] = NOT_ISSUED
  elseif applied == tonumber(seq) then
    out[i] = APPLIED
  elseif now_us - tonumber(seq) > ordering_ttl * 1000000 then
    -- Numbers come from Redis's clock in microseconds. One older than the ordering
    -- state's lifetime may be older than a newer update whose record has expired.
    out[i] = EXPIRED
  elseif applied > tonumber(seq) then
    out[i] = SUPERSEDED
  else
    local holder, lapses, claimed = state[1], tonumber(state[2] or '0'), state[3]
    local stragglers_until = tonumber(state[4] or '0')
    local free = (not holder) or holder == owner or lapses <= now
    if not free then
      local dead_at = dead_since(holder)
      if dead_at then
        -- A dead owner's request may still be on its way until its timeout ran out. Its
        -- own update (same number, same values) may go on at once; another must wait.
        local quiet_at = dead_at + window
        free = claimed == seq or now >= quiet_at
        if free and quiet_at > stragglers_until then
          stragglers_until = quiet_at
          redis.call('HSET', KEYS[i], 'w', string.format('%d', quiet_at))
        end
      end
    end
    if free and claimed ~= seq and now < stragglers_until then free = false end
    if not free then
      out[i] = LOCKED
    else
      out[i] = (claimed == seq) and UNSURE or CLAIMED
      redis.call('HSET', KEYS[i], 'o', owner, 'x', string.format('%d', now + ttl), 'c', seq)
      redis.call('EXPIRE', KEYS[i], ordering_ttl)
    end
  end
end
return out
