#!lua name=floodgate_v1
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
-- FCALL fg_decide_v1 <n> key_1 .. key_n  now_us  n  (algorithm cost shadow p1 p2 p3) x n
--   key_i      <prefix>:{<tag>}:<escaped identity>:<policy>  (one tag, so one hash slot, for
--              all of them; the tag is keyed by key_secret: src/store/redis/keys.h)
--   now_us     "" in production: the clock is Redis TIME, shared by every instance;
--              tests pass an integer to replay fixed times
--   algorithm  1 token_bucket, 2 gcra  (p1 burst, p2 unit, p3 rate: see core::bucket_scale)
--              3 sliding_window        (p1 limit, p2 period_us, p3 granule_us)
--              4 fixed_window          (p1 limit, p2 period_us)
--   shadow     1: decide and report, never deny
-- Reply: allowed, headline index (0-based), then per policy:
--   allowed, reason (0 none, 1 over limit, 2 cost exceeds burst), limit, remaining,
--   reset_after_us, retry_after_us
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

local function decide(keys, args)
  local now
  if args[1] ~= '' then
    now = tonumber(args[1])
  else
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
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
  local reply = {allowed and 1 or 0, most_restrictive(steps, shadow) - 1}
  for i = 1, n do
    local d = steps[i]
    local k = #reply
    reply[k + 1], reply[k + 2], reply[k + 3] = d.allowed, d.reason, d.limit
    reply[k + 4], reply[k + 5], reply[k + 6] = d.remaining, d.reset, d.retry
  end
  return reply
end

redis.register_function('fg_decide_v1', decide)
