#!lua name=floodgate_v2
--
-- floodgate's decision in Redis: one FCALL checks and consumes every policy of one identity,
-- all or nothing, atomically. This file is the whole function library (FUNCTION LOAD REPLACE);
-- functions are replicated, so a promoted replica already has it after a failover.
--
-- It mirrors src/core/algorithms.cc and src/core/limiter.cc line for line, with the same
-- integers: every value stays below 2^53 (checked by fg::validate_policy), where Lua's doubles
-- are exact, and divisions go through idiv(), which is exact there too. tests/vectors/*.yaml are
-- run against both.
--
-- FCALL fg_decide_v2 <n> key_1 .. key_n  now_us  n  (algorithm cost shadow p1 p2 p3) x n
--   key_i      <prefix>:{<tag>}:<escaped identity>:<policy>  (one tag, so one hash slot, for
--              all of them; the tag is keyed by key_secret: src/store/redis/keys.h)
--   now_us     "" in production: the clock is Redis TIME, shared by every instance;
--              tests pass an integer to replay fixed times
--   algorithm  1 token_bucket, 2 gcra  (p1 burst, p2 unit, p3 rate: see core::bucket_scale)
--              3 sliding_window        (p1 limit, p2 period_us, p3 granule_us)
--              4 fixed_window          (p1 limit, p2 period_us)
--   shadow     1: decide and report, never deny
-- Reply: allowed, headline index (0-based), now_us (the time decided at), then per policy:
--   allowed, reason (0 none, 1 over limit, 2 cost exceeds burst), limit, remaining,
--   reset_after_us, retry_after_us
--
-- FCALL fg_refund_v2 <n> key_1 .. key_n  now_us  consumed_at_us  n  (algorithm cost shadow p1 p2 p3) x n
--   gives back what an allowed fg_decide_v2 at consumed_at_us (its reply's now_us) consumed:
--   the same keys and policy values, `cost` what each charge consumed (0: nothing to give back;
--   shadow is ignored). Mirrors core::refund (src/core/algorithms.cc). Reply: the number of
--   states written or deleted.
-- State: a string "a:b:c" per key, written with PX = its ttl (the time until it is equivalent to
-- no state), so idle identities cost no memory. A denied request writes nothing.

local MAX_EXACT = 9007199254740992 -- 2^53

-- floor(a / b) for 0 <= a < 2^53, b > 0: the double quotient is corrected by one if rounding
-- carried it across an integer.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function ceil_div(n, d)
  local q = idiv(n, d)
  if q * d < n then q = q + 1 end
  return q
end

local function clamp(x, lo, hi)
  if x < lo then return lo end
  if x > hi then return hi end
  return x
end

local function denied_cost(limit)
  return {allowed = 0, reason = 2, limit = limit, remaining = 0, reset = 0, retry = 0,
          write = false}
end

local function token_bucket(st, cost, burst, unit, rate, now)
  local cap = burst * unit
  local tokens, ts = cap, now
  if st then
    tokens = clamp(st[1], 0, cap)
    ts = st[2]
  end
  local t = math.max(now, ts)
  if t > ts and tokens < cap then
    local to_full = ceil_div(cap - tokens, rate)
    if t - ts >= to_full then tokens = cap else tokens = tokens + (t - ts) * rate end
  end
  local ahead = t - now
  if cost > burst then
    local d = denied_cost(burst)
    d.remaining = idiv(tokens, unit)
    d.reset = ahead + ceil_div(cap - tokens, rate)
    return d
  end
  local need = cost * unit
  local d = {allowed = 0, reason = 1, limit = burst, retry = 0, write = false}
  if tokens >= need then
    tokens = tokens - need
    d.allowed, d.reason, d.write = 1, 0, cost > 0
  else
    d.retry = ahead + ceil_div(need - tokens, rate)
  end
  d.remaining = idiv(tokens, unit)
  d.reset = ahead + ceil_div(cap - tokens, rate)
  d.a, d.b, d.c, d.ttl = tokens, t, 0, d.reset
  return d
end

local function gcra(st, cost, burst, unit, rate, now)
  local cap = burst * unit
  local deficit = 0
  if st and (st[1] > now or (st[1] == now and st[2] > 0)) then
    local ahead = math.min(st[1] - now, idiv(MAX_EXACT, rate) - 1)
    deficit = ahead * rate + clamp(st[2], 0, rate - 1)
  end
  if cost > burst then
    local d = denied_cost(burst)
    d.remaining = idiv(cap - math.min(deficit, cap), unit)
    d.reset = ceil_div(deficit, rate)
    return d
  end
  local need = cost * unit
  local d = {allowed = 0, reason = 1, limit = burst, retry = 0, write = false}
  if deficit + need <= cap then
    deficit = deficit + need
    d.allowed, d.reason, d.write = 1, 0, cost > 0
  else
    d.retry = ceil_div(deficit + need - cap, rate)
  end
  d.remaining = idiv(cap - math.min(deficit, cap), unit)
  d.reset = ceil_div(deficit, rate)
  local whole = idiv(deficit, rate)
  d.a, d.b, d.c, d.ttl = now + whole, deficit - whole * rate, 0, d.reset
  return d
end

local function sliding_window(st, cost, limit, period, granule, now)
  local P = idiv(period, granule)
  local window = idiv(now, period)
  local current, previous = 0, 0
  if st then
    if st[1] >= window then
      window, current, previous = st[1], st[2], st[3]
    elseif st[1] == window - 1 then
      previous = st[2]
    end
  end
  current = clamp(current, 0, limit)
  previous = clamp(previous, 0, limit)
  local start = window * period
  local e = idiv(math.max(0, now - start), granule)
  local weight = math.max(0, P - e)
  local to_end = start + period - now

  local d
  if cost > limit then
    d = denied_cost(limit)
  elseif current + cost <= limit and previous * weight <= (limit - current - cost) * P then
    current = current + cost
    d = {allowed = 1, reason = 0, limit = limit, retry = 0, write = cost > 0}
  else
    d = {allowed = 0, reason = 1, limit = limit, write = false}
    local at
    if current + cost <= limit then
      at = P - idiv((limit - current - cost) * P, previous)
    else
      at = P + P - idiv((limit - cost) * P, current)
    end
    d.retry = math.max(0, start + at * granule - now)
  end
  local room = (limit - current) * P - previous * weight
  if room > 0 then d.remaining = idiv(room, P) else d.remaining = 0 end
  if current > 0 then
    d.reset = to_end + period
  elseif previous > 0 and weight > 0 then
    d.reset = to_end
  else
    d.reset = 0
  end
  d.a, d.b, d.c, d.ttl = window, current, previous, d.reset
  return d
end

local function fixed_window(st, cost, limit, period, _, now)
  local window = idiv(now, period)
  local count = 0
  if st and st[1] >= window then
    window = st[1]
    count = clamp(st[2], 0, limit)
  end
  local to_end = (window + 1) * period - now
  local d
  if cost > limit then
    d = denied_cost(limit)
  elseif count + cost <= limit then
    count = count + cost
    d = {allowed = 1, reason = 0, limit = limit, retry = 0, write = cost > 0}
  else
    d = {allowed = 0, reason = 1, limit = limit, retry = to_end, write = false}
  end
  d.remaining = limit - count
  if count > 0 then d.reset = to_end else d.reset = 0 end
  d.a, d.b, d.c, d.ttl = window, count, 0, d.reset
  return d
end

local ALGORITHMS = {token_bucket, gcra, sliding_window, fixed_window}

-- Refunds: each returns nil (nothing to give back) or {a, b, c, ttl}; ttl 0 deletes the state.
-- max(0, need - elapsed * rate) without passing 2^53.
local function unrefilled(need, elapsed, rate)
  if elapsed <= 0 then return need end
  if elapsed >= ceil_div(need, rate) then return 0 end
  return need - elapsed * rate
end

local function refund_token_bucket(st, cost, burst, unit, rate, consumed, now)
  local cap = burst * unit
  local tokens, ts = clamp(st[1], 0, cap), st[2]
  local t = math.max(now, ts)
  if t > ts and tokens < cap then
    local to_full = ceil_div(cap - tokens, rate)
    if t - ts >= to_full then tokens = cap else tokens = tokens + (t - ts) * rate end
  end
  local back = unrefilled(cost * unit, t - consumed, rate)
  if back == 0 or tokens == cap then return nil end
  tokens = math.min(cap, tokens + back)
  local ttl = 0
  if tokens < cap then ttl = (t - now) + ceil_div(cap - tokens, rate) end
  return {tokens, t, 0, ttl}
end

local function refund_gcra(st, cost, burst, unit, rate, consumed, now)
  local deficit = 0
  if st[1] > now or (st[1] == now and st[2] > 0) then
    local ahead = math.min(st[1] - now, idiv(MAX_EXACT, rate) - 1)
    deficit = ahead * rate + clamp(st[2], 0, rate - 1)
  end
  local back = unrefilled(cost * unit, now - consumed, rate)
  if back == 0 or deficit == 0 then return nil end
  deficit = math.max(0, deficit - back)
  local whole = idiv(deficit, rate)
  return {now + whole, deficit - whole * rate, 0, ceil_div(deficit, rate)}
end

local function refund_sliding_window(st, cost, limit, period, granule, consumed, now)
  local P = idiv(period, granule)
  local window = idiv(now, period)
  local current, previous = 0, 0
  if st[1] >= window then
    window, current, previous = st[1], st[2], st[3]
  elseif st[1] == window - 1 then
    previous = st[2]
  end
  current = clamp(current, 0, limit)
  previous = clamp(previous, 0, limit)
  local consumed_window = idiv(consumed, period)
  if window == consumed_window and current > 0 then
    current = math.max(0, current - cost)
  elseif window == consumed_window + 1 and previous > 0 then
    previous = math.max(0, previous - cost)
  else
    return nil
  end
  local start = window * period
  local e = idiv(math.max(0, now - start), granule)
  local weight = math.max(0, P - e)
  local to_end = start + period - now
  local ttl = 0
  if current > 0 then
    ttl = to_end + period
  elseif previous > 0 and weight > 0 then
    ttl = to_end
  end
  return {window, current, previous, ttl}
end

local function refund_fixed_window(st, cost, limit, period, _, consumed, now)
  local window = math.max(idiv(now, period), st[1])
  if st[1] ~= window or window ~= idiv(consumed, period) then return nil end
  local count = clamp(st[2], 0, limit)
  if count == 0 then return nil end
  count = math.max(0, count - cost)
  local ttl = 0
  if count > 0 then ttl = (window + 1) * period - now end
  return {window, count, 0, ttl}
end

local REFUNDS = {refund_token_bucket, refund_gcra, refund_sliding_window, refund_fixed_window}

local function parse_state(v)
  if not v then return nil end
  local a, b, c = string.match(v, '^(%-?%d+):(%-?%d+):(%-?%d+)$')
  if not a then return nil end -- not ours: decide as if there were no state
  return {tonumber(a), tonumber(b), tonumber(c)}
end

-- Mirrors fg::most_restrictive: a denying non-shadow policy (longest retry) first, else the
-- non-shadow one with the least remaining (then the longest reset); shadow policies come first
-- only when every policy is in shadow mode.
local function most_restrictive(steps, shadow)
  local best, best_denies = 1, steps[1].allowed == 0 and shadow[1] == 0
  local best_enforced = shadow[1] == 0
  for i = 2, #steps do
    local d, b = steps[i], steps[best]
    local enforced = shadow[i] == 0
    local denies = d.allowed == 0 and enforced
    local better
    if denies ~= best_denies then
      better = denies
    elseif enforced ~= best_enforced then
      better = enforced
    elseif denies then
      better = d.retry > b.retry
    else
      better = d.remaining < b.remaining or (d.remaining == b.remaining and d.reset > b.reset)
    end
    if better then best, best_denies, best_enforced = i, denies, enforced end
  end
  return best
end

local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function decide(keys, args)
  local now = clock(args[1])
  local n = tonumber(args[2])
  if n == nil or n < 1 or n ~= #keys or #args ~= 2 + 6 * n then
    return redis.error_reply('ERR floodgate: bad arguments')
  end
  local values = redis.call('MGET', unpack(keys))
  local steps, states, shadow, params = {}, {}, {}, {}
  local allowed = true
  for i = 1, n do
    local base = 2 + (i - 1) * 6
    local p = {}
    for j = 1, 6 do p[j] = tonumber(args[base + j]) end
    local algorithm = ALGORITHMS[p[1]]
    if not algorithm then return redis.error_reply('ERR floodgate: bad algorithm') end
    params[i] = p
    states[i] = parse_state(values[i])
    shadow[i] = p[3]
    steps[i] = algorithm(states[i], p[2], p[4], p[5], p[6], now)
    if steps[i].allowed == 0 and shadow[i] == 0 then allowed = false end
  end
  for i = 1, n do
    local d = steps[i]
    if allowed then
      if d.write then
        redis.call('SET', keys[i], string.format('%.0f:%.0f:%.0f', d.a, d.b, d.c),
                   'PX', string.format('%.0f', ceil_div(d.ttl, 1000)))
      end
    elseif d.allowed == 1 then
      -- Another policy denied: this one consumes nothing; report what it holds untouched.
      local p = params[i]
      steps[i] = ALGORITHMS[p[1]](states[i], 0, p[4], p[5], p[6], now)
    end
  end
  local reply = {allowed and 1 or 0, most_restrictive(steps, shadow) - 1, now}
  for i = 1, n do
    local d = steps[i]
    local k = #reply
    reply[k + 1], reply[k + 2], reply[k + 3] = d.allowed, d.reason, d.limit
    reply[k + 4], reply[k + 5], reply[k + 6] = d.remaining, d.reset, d.retry
  end
  return reply
end

local function refund(keys, args)
  local now = clock(args[1])
  local consumed = tonumber(args[2])
  local n = tonumber(args[3])
  if consumed == nil or n == nil or n < 1 or n ~= #keys or #args ~= 3 + 6 * n then
    return redis.error_reply('ERR floodgate: bad arguments')
  end
  local values = redis.call('MGET', unpack(keys))
  local written, deleted = 0, {}
  for i = 1, n do
    local base = 3 + (i - 1) * 6
    local p = {}
    for j = 1, 6 do p[j] = tonumber(args[base + j]) end
    local give_back = REFUNDS[p[1]]
    if not give_back then return redis.error_reply('ERR floodgate: bad algorithm') end
    local st = parse_state(values[i])
    -- Every charge is computed from the state read first (a policy given twice: the last
    -- write wins, and none follows a deletion), as in the memory store.
    if st and p[2] > 0 and not deleted[keys[i]] then
      local r = give_back(st, p[2], p[4], p[5], p[6], consumed, now)
      if r then
        if r[4] > 0 then
          redis.call('SET', keys[i], string.format('%.0f:%.0f:%.0f', r[1], r[2], r[3]),
                     'PX', string.format('%.0f', ceil_div(r[4], 1000)))
        else
          redis.call('DEL', keys[i])
          deleted[keys[i]] = true
        end
        written = written + 1
      end
    end
  end
  return written
end

redis.register_function('fg_decide_v2', decide)
redis.register_function('fg_refund_v2', refund)
