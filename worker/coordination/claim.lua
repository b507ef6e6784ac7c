-- Claim accounts for updates, in one call.
-- KEYS: one state hash per account. ARGV: owner, ttl ms, then one seq per account.
-- Returns one verdict per account (CLAIMED, SUPERSEDED, APPLIED, LOCKED or UNSURE).
-- Numbers stay strings when written: Lua would print a 16-digit number as 1.7e+15.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owner, ttl = ARGV[1], tonumber(ARGV[2])

local function owner_dead(holder)
  local instance = string.match(holder, '^([^:]+):')
  return instance ~= nil and redis.call('EXISTS', DEAD_PREFIX .. instance) == 1
end

local out = {}
for i = 1, #KEYS do
  local seq = ARGV[2 + i]
  local state = redis.call('HMGET', KEYS[i], 'a', 'o', 'x', 'c')
  local applied = tonumber(state[1] or '0')
  if applied > tonumber(seq) then
    out[i] = SUPERSEDED
  elseif applied == tonumber(seq) then
    out[i] = APPLIED
  else
    local holder, lapses = state[2], tonumber(state[3] or '0')
    if holder and holder ~= owner and lapses > now and not owner_dead(holder) then
      out[i] = LOCKED
    else
      out[i] = (state[4] == seq) and UNSURE or CLAIMED
      redis.call('HSET', KEYS[i], 'o', owner, 'x', string.format('%d', now + ttl), 'c', seq)
    end
  end
end
return out
