-- Extend the locks this owner still holds.
-- KEYS: locks. ARGV: owner, ttl ms. Returns how many were renewed.
local renewed = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2]))
    renewed = renewed + 1
  end
end
return renewed
