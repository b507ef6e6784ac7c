-- Claim accounts for updates, in one call.
-- KEYS: lock, applied per account. ARGV: owner, ttl ms, then one seq per account.
-- Returns one verdict per account (CLAIMED, SUPERSEDED, APPLIED or LOCKED).
local out = {}
local owner, ttl = ARGV[1], tonumber(ARGV[2])
for i = 1, #KEYS, 2 do
  local seq = tonumber(ARGV[2 + (i + 1) / 2])
  local applied = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  if applied > seq then
    out[#out + 1] = SUPERSEDED
  elseif applied == seq then
    out[#out + 1] = APPLIED
  else
    local holder = redis.call('GET', KEYS[i])
    if holder and holder ~= owner then
      out[#out + 1] = LOCKED
    else
      redis.call('SET', KEYS[i], owner, 'PX', ttl)
      out[#out + 1] = CLAIMED
    end
  end
end
return out
