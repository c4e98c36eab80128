-- commit.lua: apply one write, decided in Python, as a compare-and-set (see driver.py, "Writes").
--
-- ARGV[1] is the number of guards; each guard is four arguments (kind, key, field, expected):
--   'h': HGET key field must be the expected value; expected is '1' .. value, or '0' for "no such field"
--        (a task's version, a unique key's holder, a group's or schedule's stored JSON, a gate's bucket)
--   'c': SCARD key must be tonumber(expected) (a concurrency key's running count)
-- If any guard fails nothing is written and the script returns the guard's number: the caller read a state
-- that has changed since, and decides again. Otherwise it runs the operations that follow, in order, and
-- returns 0. Every operation is a name and a fixed number of arguments (hset: a count of pairs, then pairs).
local n = tonumber(ARGV[1])
local i = 2
for g = 1, n do
  local kind, key, field, expected = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  if kind == 'h' then
    local v = redis.call('HGET', key, field)
    if v == false then
      if expected ~= '0' then return g end
    elseif expected ~= '1' .. v then
      return g
    end
  elseif kind == 'c' then
    if redis.call('SCARD', key) ~= tonumber(expected) then return g end
  else
    return redis.error_reply('commit.lua: unknown guard ' .. tostring(kind))
  end
end
local last = #ARGV
while i <= last do
  local op = ARGV[i]
  if op == 'hset' then
    local pairs_ = tonumber(ARGV[i + 2])
    redis.call('HSET', ARGV[i + 1], unpack(ARGV, i + 3, i + 2 + 2 * pairs_))
    i = i + 3 + 2 * pairs_
  elseif op == 'del' then
    redis.call('DEL', ARGV[i + 1])
    i = i + 2
  elseif op == 'hdel' then
    redis.call('HDEL', ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'hdelif' then
    -- Delete the field only while it still holds this value (a unique key's entry for its holder).
    if redis.call('HGET', ARGV[i + 1], ARGV[i + 2]) == ARGV[i + 3] then redis.call('HDEL', ARGV[i + 1], ARGV[i + 2]) end
    i = i + 4
  elseif op == 'hincr' then
    -- A count; a count back at zero is removed, so the hash holds only what occurs.
    if redis.call('HINCRBY', ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]) <= 0 then
      redis.call('HDEL', ARGV[i + 1], ARGV[i + 2])
    end
    i = i + 4
  elseif op == 'zadd' then
    redis.call('ZADD', ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'zrem' then
    redis.call('ZREM', ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'sadd' then
    redis.call('SADD', ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'srem' then
    redis.call('SREM', ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'incr' then
    redis.call('INCR', ARGV[i + 1])
    i = i + 2
  elseif op == 'pub' then
    redis.call('PUBLISH', ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  else
    return redis.error_reply('commit.lua: unknown operation ' .. tostring(op))
  end
end
return 0
