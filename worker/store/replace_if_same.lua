-- KEYS[1]: a hash; ARGV: field, expected, new, field, expected, new, ...
-- Sets each field to its new value only where it still holds the expected one, so a
-- writer that read, transformed and writes back never overwrites a newer write.
local replaced = 0
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    replaced = replaced + 1
  end
end
return replaced
