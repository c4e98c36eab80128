-- complete.lua: the worker's completions (Store.acknowledge_many -> driver.acknowledge), checked and written in
-- one script: transitions.mark_done for each task whose lease the caller still holds, as driver._write would
-- write it, without the read-decide-commit round trip of the general path (see driver.py, "Writes").
--
-- ARGV: now (integer microseconds; '' = the server's TIME), key prefix, then four arguments per completion:
-- task id, worker id, lease token, result ('0': none; '1' .. bytes: the encoded value).
-- A completion is written only when its task is claimed by that worker under that token (the fence
-- transitions.check_lease applies; this script runs atomically, so what it checked is what it writes over) and
-- belongs to no group (ending a member may settle its group: _groups.settle is Python's). The others are
-- left untouched and their positions (1-based) returned: the caller applies them through the general path,
-- which decides each one's outcome (NotFound, NotClaimed, NotOwned) or settles the group.
local P = ARGV[2]
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local nows = string.format('%.0f', now)
local minute = string.format('%.0f', now - now % 60000000)
local left = {}
local written, freed = 0, false
local n = (#ARGV - 2) / 4
for k = 1, n do
  local a = 2 + 4 * (k - 1)
  local id, worker, token, value = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local tk = P .. 't:' .. id
  local f = redis.call('HMGET', tk, 'state', 'cw', 'ct', 'grp', 'queue', 'seq', 'ck', 'hold', 'v')
  if f[1] ~= 'claimed' or f[2] ~= worker or f[3] ~= token or f[4] ~= false then
    table.insert(left, k)
  else
    local q = f[5]
    -- One HDEL and one HSET per task (each redis.call costs the server as much as a few fields of Lua).
    local gone = {'cw', 'ct', 'cat', 'cto', 'rat', 'rdata', 'resfail'}
    -- transitions._touch: a unique task leaving its hold states gives its key up for good.
    if f[8] ~= false and not string.find(f[8], ',done,', 1, true) then table.insert(gone, 'hold') end
    local v = tostring(tonumber(f[9] or '0') + 1)
    if string.sub(value, 1, 1) == '1' then
      redis.call('HSET', tk, 'state', 'done', 'creq', '0', 'resat', nows, 'fin', nows, 'updated', nows, 'v', v,
        'resval', string.sub(value, 2))
    else
      table.insert(gone, 'resval')
      redis.call('HSET', tk, 'state', 'done', 'creq', '0', 'resat', nows, 'fin', nows, 'updated', nows, 'v', v)
    end
    redis.call('HDEL', tk, unpack(gone))
    redis.call('ZREM', P .. 's:claimed', id)
    redis.call('ZADD', P .. 's:done', f[6], id)
    local ck = P .. 'count:' .. q
    if redis.call('HINCRBY', ck, 'claimed', -1) <= 0 then redis.call('HDEL', ck, 'claimed') end
    redis.call('HINCRBY', ck, 'done', 1)
    redis.call('ZREM', P .. 'leases:' .. q, id)
    if f[7] ~= false then
      redis.call('SREM', P .. 'kr:' .. f[7], id)
      freed = true
    end
    redis.call('ZADD', P .. 'fin', now, id)
    written = written + 1
  end
end
if written > 0 then
  redis.call('HINCRBY', P .. 'finished', minute .. ':done', written)
  redis.call('INCR', P .. 'changes')
  -- Claimers wait for work that can be claimed: a completion makes some only when it frees a key's slot.
  if freed then redis.call('PUBLISH', P .. 'events', 'w') else redis.call('PUBLISH', P .. 'statuses', 's') end
end
return left
