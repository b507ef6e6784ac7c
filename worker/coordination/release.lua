-- Settle each account's claim: raise the applied number (APPLIED_NOW), forget the claim
-- when the request surely did not apply (NOT_APPLIED), keep it when nobody knows (a
-- timeout: a later delivery of the same number then checks before sending). The lock
-- is dropped if this owner still holds it.
-- Between updates an account's lock hash is gone (a hash with no field left is deleted):
-- only its applied number stays, in a day's hash (applied.lua).
-- An applied update of an account with a read-back pending (one of its updates ended
-- ambiguously: readback.py) becomes the account's intent, unless a newer one is there:
-- the values the read-back puts back should the vendor hold others.
-- KEYS: one state hash per account. ARGV: owner, ordering ttl s, then per account: seq,
-- outcome, send ("1"/"0"), email, ref (who asked: job:<id> or bulk:<id>:<line>).
local owner, ordering_ttl = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local days = applied_days(tonumber(t[1]), ordering_ttl)
local function keep_intent(account, seq, send, email, ref)
  if send == '' or not redis.call('ZSCORE', VERIFY_KEY, account) then return end
  local intent = INTENT_PREFIX .. '{' .. account .. '}'
  local newest = tonumber(redis.call('HGET', intent, 's') or '0')
  if tonumber(seq) >= newest then
    redis.call('HSET', intent, 's', seq, 'v', send, 'e', email, 'r', ref)
    redis.call('EXPIRE', intent, ordering_ttl)
  end
end

for i = 1, #KEYS do
  local at = 3 + 5 * (i - 1)
  local seq, outcome = ARGV[at], ARGV[at + 1]
  local claimed = redis.call('HGET', KEYS[i], 'c')
  if outcome == APPLIED_NOW then
    local account = account_of(KEYS[i])
    local applied = applied_of(account, days)
    if tonumber(seq) > applied then
      set_applied(account, seq, days, ordering_ttl)
      applied = tonumber(seq)
    end
    if claimed and tonumber(claimed) <= applied then redis.call('HDEL', KEYS[i], 'c') end
    keep_intent(account, seq, ARGV[at + 2], ARGV[at + 3], ARGV[at + 4])
  elseif outcome == NOT_APPLIED and claimed == seq then
    redis.call('HDEL', KEYS[i], 'c')
  end
  if redis.call('HGET', KEYS[i], 'o') == owner then redis.call('HDEL', KEYS[i], 'o', 'x') end
  local stragglers_until = redis.call('HGET', KEYS[i], 'w')
  if stragglers_until and tonumber(stragglers_until) <= now then redis.call('HDEL', KEYS[i], 'w') end
end
return #KEYS
