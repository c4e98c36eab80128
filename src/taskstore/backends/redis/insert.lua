-- insert.lua: new tasks without unique keys (plain creates, bulk or coalesced singles), all or none, in one
-- script: the time and the seqs are read here, so a create costs one round trip (see driver.py, "Writes").
--
-- ARGV: now (integer microseconds; '' = the server's TIME), key prefix, the number of tasks, then per task:
-- id, queue, priority, run_at in microseconds ('' = now), expires_at ('' = none), group id ('' = none),
-- recurring id ('' = none), the number of fields, then those fields of its hash as name/value pairs: every
-- field transitions.create decides, except those that depend on the time or the seq, which are filled in here
-- as driver._write and driver._index would write them (seq, created, updated, enq, run, om; the indexes of a
-- queued task).
-- Returns {now, last seq} (the tasks' seqs end there, in order), or {-1, k} when task k's id is taken: then
-- nothing is written.
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
  local nf = tonumber(ARGV[i + 7])
  rows[k] = {id = ARGV[i], q = ARGV[i + 1], prio = tonumber(ARGV[i + 2]), run = ARGV[i + 3], exp = ARGV[i + 4],
             grp = ARGV[i + 5], rec = ARGV[i + 6], first = i + 8, last = i + 7 + 2 * nf}
  i = i + 8 + 2 * nf
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
end
redis.call('INCR', P .. 'changes')
redis.call('PUBLISH', P .. 'events', 'w')
return {nows, last}
