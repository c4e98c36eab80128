-- claim.lua: claim ready tasks in claim order, past paused queues, expiry and key limits, in one step.
--
-- ARGV: now (integer microseconds; '' = the server's TIME), limit, worker id, key prefix, mode, the number of
-- queues, the queues (none: every queue), then (mode 'claim') a random lease token of 32 hex digits: the k-th task
-- claimed gets its first 24 digits followed by k in 8 hex digits (one token drawn by the caller, not one per task
-- it might get: a claim asking for 100 tasks that finds one would otherwise draw and send 100).
-- Modes: 'claim' takes the tasks (returns their hashes), 'find' returns what a claim would take and writes
-- no lease nor bucket, 'any' returns 1 when some waiting task is ready in an unpaused queue (key limits not
-- consulted), else 0.
--
-- Each queue keeps its waiting tasks in two sorted sets: 'delayed:<queue>' (score run_at) and 'ready:<queue>'
-- (score -priority, member the task's 'om': fixed-width run_at, seq, id; so ZRANGE is claim order). Tasks come
-- due here: those of 'delayed' whose run_at has passed move to 'ready' first. The queues' ready sets are then
-- merged in claim order. A member whose task no longer waits under that order is stale and dropped; an
-- expired task is passed over (the reaper ends it); a task whose concurrency key's gate does not admit one
-- more is passed over and those behind it are still taken (gates.pick, written again below).
local P = ARGV[4]
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local limit = tonumber(ARGV[2])
local worker = ARGV[3]
local mode = ARGV[5]
local nq = tonumber(ARGV[6])
local token_head = string.sub(ARGV[7 + nq] or '', 1, 24)
local queues = {}
if nq == 0 then
  queues = redis.call('SMEMBERS', P .. 'queues')
else
  for j = 1, nq do queues[j] = ARGV[6 + j] end
end
local function num(x) return string.format('%.0f', x) end

local heads = {}
for _, q in ipairs(queues) do
  if redis.call('HGET', P .. 'paused', q) ~= '1' then
    local rk, dk = P .. 'ready:' .. q, P .. 'delayed:' .. q
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', dk, '-inf', now)) do
      local f = redis.call('HMGET', P .. 't:' .. id, 'state', 'prio', 'om')
      if f[1] == 'queued' or f[1] == 'failed' then redis.call('ZADD', rk, -tonumber(f[2]), f[3]) end
      redis.call('ZREM', dk, id)
    end
    table.insert(heads, {q = q, rk = rk, off = 0, buf = {}, pos = 1, done = false})
  end
end

local page = math.max(limit * 2, 32)
local function peek(h)
  if h.pos > #h.buf then
    if h.done then return nil end
    local r = redis.call('ZRANGE', h.rk, h.off, h.off + page - 1, 'WITHSCORES')
    h.off = h.off + page
    h.buf, h.pos = {}, 1
    for k = 1, #r, 2 do table.insert(h.buf, {tonumber(r[k + 1]), r[k]}) end
    if #r < 2 * page then h.done = true end
    if #h.buf == 0 then return nil end
  end
  return h.buf[h.pos]
end

-- Key limits: the gate of a concurrency key as gates.KeyGate keeps it (false: the key has no limit).
local gates = {}
local function gate(key)
  local g = gates[key]
  if g == nil then
    local v = redis.call('HMGET', P .. 'gate:' .. key, 'c', 'r', 'per', 'tok', 'at')
    if v[3] == false then
      g = false
    else
      g = {c = tonumber(v[1]), r = tonumber(v[2]), per = tonumber(v[3]), tok = tonumber(v[4]) or 0,
           at = tonumber(v[5]) or now, running = redis.call('SCARD', P .. 'kr:' .. key), drawn = 0}
    end
    gates[key] = g
  end
  return g
end
local function level(g)
  if g.r == nil then return 0 end
  return math.min(g.r, g.tok + math.max((now - g.at) / 1000000, 0) * g.r / g.per)
end
local function admits(g)
  if g.c ~= nil and g.running >= g.c then return false end
  return g.r == nil or level(g) >= 1.0 - 1e-9
end
local function take(g)
  g.running = g.running + 1
  if g.r ~= nil then
    g.tok = math.max(level(g) - 1.0, 0.0)
    g.at = now
    g.drawn = g.drawn + 1
  end
end

-- Bounded, so a ready set whose head is all expired or held back costs one script a bounded time.
local budget = limit + 5000
local chosen, stale, back = {}, {}, {}
local offset = 32 + 1  -- RUN_DIGITS + SEQ_DIGITS + 1: where the id starts in a member
while #chosen < limit and budget > 0 do
  budget = budget - 1
  local best, bh = nil, nil
  for _, h in ipairs(heads) do
    local c = peek(h)
    if c ~= nil and (best == nil or c[1] < best[1] or (c[1] == best[1] and c[2] < best[2])) then best, bh = c, h end
  end
  if best == nil then break end
  bh.pos = bh.pos + 1
  local id = string.sub(best[2], offset)
  local f = redis.call('HMGET', P .. 't:' .. id, 'state', 'run', 'exp', 'ck', 'om')
  if (f[1] ~= 'queued' and f[1] ~= 'failed') or f[5] ~= best[2] then
    table.insert(stale, {bh.rk, best[2]})
  elseif tonumber(f[2]) > now then
    -- Not due after all (the store's clock was set back): back to waiting for its run_at.
    table.insert(stale, {bh.rk, best[2]})
    table.insert(back, {bh.q, f[2], id})
  elseif f[3] ~= false and tonumber(f[3]) <= now then
    -- Expired: never claimed again; the reaper ends it and takes it out of the set.
  else
    local ok = true
    if f[4] ~= false and mode ~= 'any' then
      local g = gate(f[4])
      if g then
        ok = admits(g)
        if ok then take(g) end
      end
    end
    if ok then table.insert(chosen, {id = id, h = bh, m = best[2], state = f[1], ck = f[4], exp = f[3]}) end
  end
end
for _, s in ipairs(stale) do redis.call('ZREM', s[1], s[2]) end
for _, b in ipairs(back) do redis.call('ZADD', P .. 'delayed:' .. b[1], b[2], b[3]) end

if mode == 'any' then
  if #chosen > 0 then return 1 end
  return 0
end

local FIELDS = {--[[FIELDS]]}
local POS = {}
for k, name in ipairs(FIELDS) do POS[name] = k end
local out = {}
if mode == 'claim' then
  local nows = num(now)
  for k, c in ipairs(chosen) do
    local tk = P .. 't:' .. c.id
    -- The whole task is read once, before the writes, and what they change is changed in what is returned too
    -- (each redis.call costs the server as much as a few fields of Lua): one HMGET, one HSET, one HDEL.
    local row = redis.call('HMGET', tk, unpack(FIELDS))
    local ends = num(now + math.floor(tonumber(row[POS.pto]) * 1000000 + 0.5))
    local att = tostring(tonumber(row[POS.att] or '0') + 1)
    local v = tostring(tonumber(row[POS.v] or '0') + 1)
    local token = token_head .. string.format('%08x', k)
    redis.call('HSET', tk, 'state', 'claimed', 'cw', worker, 'ct', token, 'cat', nows, 'cto', ends, 'creq', '0',
      'updated', nows, 'att', att, 'v', v)
    row[POS.state], row[POS.cw], row[POS.ct], row[POS.cat], row[POS.cto] = 'claimed', worker, token, nows, ends
    row[POS.creq], row[POS.updated], row[POS.att], row[POS.v] = '0', nows, att, v
    row[POS.rat], row[POS.rdata] = false, false
    local hold = row[POS.hold]
    -- transitions._touch: a unique task leaving its hold states gives its key up for good.
    if hold ~= false and not string.find(hold, ',claimed,', 1, true) then
      redis.call('HDEL', tk, 'rat', 'rdata', 'hold')
      row[POS.hold] = false
    else
      redis.call('HDEL', tk, 'rat', 'rdata')
    end
    redis.call('ZREM', c.h.rk, c.m)
    redis.call('ZADD', P .. 'leases:' .. c.h.q, ends, c.id)
    redis.call('ZREM', P .. 's:' .. c.state, c.id)
    redis.call('ZADD', P .. 's:claimed', row[POS.seq], c.id)
    if redis.call('HINCRBY', P .. 'count:' .. c.h.q, c.state, -1) <= 0 then
      redis.call('HDEL', P .. 'count:' .. c.h.q, c.state)
    end
    redis.call('HINCRBY', P .. 'count:' .. c.h.q, 'claimed', 1)
    if c.exp ~= false then redis.call('ZREM', P .. 'expiring', c.id) end
    if c.ck ~= false then redis.call('SADD', P .. 'kr:' .. c.ck, c.id) end
    -- Each task as one JSON array of its FIELDS (false: absent), not as 37 replies: the client parses one
    -- string per task with its C JSON parser instead of 37 RESP elements in Python (_rows.decode_packed).
    out[k] = cjson.encode(row)
  end
  for key, g in pairs(gates) do
    if g and g.drawn > 0 then redis.call('HSET', P .. 'gate:' .. key, 'tok', tostring(g.tok), 'at', num(g.at)) end
  end
  if #chosen > 0 then
    redis.call('INCR', P .. 'changes')
    redis.call('PUBLISH', P .. 'statuses', 's')  -- a claim wakes no claimer: for status watchers only
  end
else
  for k, c in ipairs(chosen) do
    out[k] = cjson.encode(redis.call('HMGET', P .. 't:' .. c.id, unpack(FIELDS)))
  end
end
return out
