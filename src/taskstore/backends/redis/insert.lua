-- insert.lua: new tasks (plain creates, bulk or coalesced singles, and unique ones whose keys are free), all or
-- none, in one script: the time and the seqs are read here, so a create costs one round trip (see driver.py,
-- "Writes").
--
-- ARGV: now (integer microseconds; '' = the server's TIME), key prefix, the number of tasks, then per task:
-- id, queue, priority, run_at in microseconds ('' = now), expires_at ('' = none), group id ('' = none),
-- recurring id ('' = none), unique slot ('queue NUL key'; '' = none), unique_for in microseconds ('' = none),
-- the number of fields, then those fields of its hash as name/value pairs: every field transitions.create
-- decides, except those that depend on the time or the seq, which are filled in here as driver._write and
-- driver._index would write them (seq, created, updated, enq, run, om, until; the indexes of a queued task).
-- Returns {now, last seq} (the tasks' seqs end there, in order); {-1, k} when task k's id is taken; {-2, k} when
-- task k's unique key has a holder (whether it still holds it is the general path's decision). Then nothing is
-- written. The driver sends no two rows of one slot.
local P = ARGV[2]
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local n = tonumber(ARGV[3])
local rows = {}
local i = 4
for k = 1, n do
  local nf = tonumber(ARGV[i + 9])
  rows[k] = {id = ARGV[i], q = ARGV[i + 1], prio = tonumber(ARGV[i + 2]), run = ARGV[i + 3], exp = ARGV[i + 4],
             grp = ARGV[i + 5], rec = ARGV[i + 6], slot = ARGV[i + 7], ufor = ARGV[i + 8], first = i + 10,
             last = i + 9 + 2 * nf}
  i = i + 10 + 2 * nf
  -- The key first: a held key answers with its holder even when the id is taken (by the holder, say).
  if rows[k].slot ~= '' and redis.call('HEXISTS', P .. 'unique', rows[k].slot) == 1 then return {-2, k} end
  if redis.call('EXISTS', P .. 't:' .. rows[k].id) == 1 then return {-1, k} end
end
local last = redis.call('INCRBY', P .. 'seq', n)
local nows = string.format('%.0f', now)
for k, r in ipairs(rows) do
  local seq = last - n + k
  local run = now
  if r.run ~= '' then run = tonumber(r.run) end
  local runs = string.format('%.0f', run)
  local om = string.format('%017.0f%015.0f', math.max(run, 0), seq) .. r.id
  local tk = P .. 't:' .. r.id
  redis.call('HSET', tk, 'seq', seq, 'created', nows, 'updated', nows, 'enq', nows, 'run', runs, 'om', om,
    unpack(ARGV, r.first, r.last))
  redis.call('ZADD', P .. 'ids', seq, r.id)
  redis.call('ZADD', P .. 's:queued', seq, r.id)
  redis.call('HINCRBY', P .. 'count:' .. r.q, 'queued', 1)
  redis.call('SADD', P .. 'queues', r.q)
  if run <= now then
    redis.call('ZADD', P .. 'ready:' .. r.q, -r.prio, om)
  else
    redis.call('ZADD', P .. 'delayed:' .. r.q, runs, r.id)
  end
  if r.exp ~= '' then redis.call('ZADD', P .. 'expiring', r.exp, r.id) end
  if r.grp ~= '' then redis.call('SADD', P .. 'gm:' .. r.grp, r.id) end
  if r.rec ~= '' then redis.call('SADD', P .. 'rec:' .. r.rec, r.id) end
  if r.slot ~= '' then
    redis.call('HSET', P .. 'unique', r.slot, r.id)
    if r.ufor ~= '' then redis.call('HSET', tk, 'until', string.format('%.0f', now + tonumber(r.ufor))) end
  end
end
redis.call('INCR', P .. 'changes')
redis.call('PUBLISH', P .. 'events', 'w')
return {nows, last}
