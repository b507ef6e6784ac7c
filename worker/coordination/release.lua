-- Settle each account's claim: raise the applied number (APPLIED_NOW), forget the claim
-- when the request surely did not apply (NOT_APPLIED), keep it when nobody knows (a
-- timeout: a later delivery of the same number then checks before sending). The lock
-- is dropped if this owner still holds it.
-- KEYS: one state hash per account. ARGV: owner, then per account: seq, outcome.
local owner = ARGV[1]
for i = 1, #KEYS do
  local seq, outcome = ARGV[2 * i], ARGV[2 * i + 1]
  if outcome == APPLIED_NOW then
    local applied = tonumber(redis.call('HGET', KEYS[i], 'a') or '0')
    if tonumber(seq) > applied then redis.call('HSET', KEYS[i], 'a', seq) end
  elseif outcome == NOT_APPLIED and redis.call('HGET', KEYS[i], 'c') == seq then
    redis.call('HDEL', KEYS[i], 'c')
  end
  if redis.call('HGET', KEYS[i], 'o') == owner then redis.call('HDEL', KEYS[i], 'o', 'x') end
end
return #KEYS
