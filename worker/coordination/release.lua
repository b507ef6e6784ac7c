-- Raise each account's applied number (for updates that were applied) and drop its lock.
-- KEYS: lock, applied per account. ARGV: owner, then per account: seq, "1" if applied.
local owner = ARGV[1]
local j = 0
for i = 1, #KEYS, 2 do
  local seq, ok = tonumber(ARGV[2 + 2 * j]), ARGV[3 + 2 * j]
  if ok == '1' then
    local applied = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
    if seq > applied then redis.call('SET', KEYS[i + 1], seq) end
  end
  if redis.call('GET', KEYS[i]) == owner then redis.call('DEL', KEYS[i]) end
  j = j + 1
end
return j
