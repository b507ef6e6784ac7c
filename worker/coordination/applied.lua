-- Shared by claim.lua and release.lua: each account's highest applied number, kept as one
-- field of a day's hash, `APPLIED_PREFIX .. day` (day = Redis time / 86400). An account
-- lives in one day's hash only: writing it moves it to today's. A day's hash expires
-- `ordering ttl` + a day after its last write, so a number is remembered for at least
-- the ordering TTL; readers look at every day that may still hold one.
-- About 90 bytes an account on Redis 7.0, with no key of its own.
local function account_of(key)
  return string.match(key, '^.-{(.*)}$')
end

local function applied_days(now_s, ordering_ttl)
  local today = math.floor(now_s / 86400)
  local days = {}
  for day = today, today - math.ceil(ordering_ttl / 86400) - 1, -1 do
    days[#days + 1] = APPLIED_PREFIX .. day
  end
  return days
end

-- The account's applied number (0 if none) and the day hash holding it.
local function applied_of(account, days)
  for _, key in ipairs(days) do
    local value = redis.call('HGET', key, account)
    if value then return tonumber(value), key end
  end
  return 0, nil
end

local function set_applied(account, seq, days, ordering_ttl)
  local _, held_in = applied_of(account, days)
  if held_in and held_in ~= days[1] then redis.call('HDEL', held_in, account) end
  redis.call('HSET', days[1], account, seq)
  redis.call('EXPIRE', days[1], ordering_ttl + 86400)
end
