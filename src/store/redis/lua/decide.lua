#!lua name=floodgate_v4
--
-- floodgate's decision in Redis: one FCALL checks and consumes every policy of one identity,
-- all or nothing, atomically; or several such decisions in one call (a batch). This file is the
-- whole function library (FUNCTION LOAD); functions are replicated, so a promoted replica
-- already has it after a failover.
--
-- It mirrors src/core/algorithms.cc and src/core/limiter.cc line for line, with the same
-- integers: every value stays below 2^53 (checked by fg::validate_policy), where Lua's doubles
-- are exact, and divisions go through idiv(), which is exact there too. tests/vectors/*.yaml are
-- run against both (tests/lua_vectors_test.cc, through every function below).
--
-- Cost: this is the hot path of every decision, so each algorithm is one straight-line body
-- returning its figures as multiple values (no table per policy), the state is read and
-- written as 33 bytes of struct.pack (no string.format, no pattern match), and the only tables
-- built per call are the ones Redis needs: MGET's reply and ours (bench/redis_cpu.sh).
--
-- FCALL fg_decide_v3 <keys> key.. now_us m  (n_1, (alg cost shadow p1 p2 p3) x n_1) .. (n_m, ..)
--   m independent decisions ("items"), each all or nothing as one fg_decide_v2 call; the keys are
--   each item's keys in order (one item's keys share a hash slot; in a cluster, so must all of a
--   call's). Items are applied in order: when keys repeat, a later item sees an earlier one's
--   writes. One TIME and one MGET serve the whole call.
--   key        <prefix>:{<tag>}:<escaped identity>:<policy>  (src/store/redis/keys.h)
--   now_us     "" in production: the clock is Redis TIME, shared by every instance;
--              tests pass an integer to replay fixed times
--   alg        1 token_bucket, 2 gcra  (p1 burst, p2 unit, p3 rate: see core::bucket_scale)
--              3 sliding_window        (p1 limit, p2 period_us, p3 granule_us)
--              4 fixed_window          (p1 limit, p2 period_us)
--   shadow     1: decide and report, never deny
-- Reply: a flat array of integers: now_us (the time decided at), then per item: allowed,
--   most restrictive policy (0-based), then per policy: allowed, reason (0 none, 1 over limit,
--   2 cost exceeds burst), limit, remaining, reset_after_us, retry_after_us.
--
-- FCALL fg_refund_v3 <n> key_1 .. key_n  now_us  consumed_at_us  n  (alg cost shadow p1 p2 p3) x n
--   gives back what an allowed decision at consumed_at_us (its reply's now_us) consumed: the
--   same keys and policy values, `cost` what each charge consumed (0: nothing to give back;
--   shadow is ignored). Mirrors core::refund (src/core/algorithms.cc). Reply: the number of
--   states written or deleted. One item per call: refunds are rare.
--
-- Rolling upgrade: this library also registers fg_decide_v2 and fg_refund_v2 with exactly the
-- arguments and replies of library floodgate_v2 (the release before), over the same bodies, so
-- instances of both versions decide on the same states. A v3 instance loads it with
--   MULTI; FUNCTION DELETE floodgate_v2; FUNCTION LOAD REPLACE <this>; EXEC
-- after which a v2 instance's own FUNCTION LOAD REPLACE fails (its function names exist in this
-- library) and is ignored by it; its FCALLs run the code below. Docs: docs/redis.md.
--   fg_decide_v2  <n> key_1 .. key_n  now_us n  (alg cost shadow p1 p2 p3) x n
--                 reply: allowed, most restrictive, now_us, then 6 per policy as above
--   fg_refund_v2  as fg_refund_v3
--
-- State: one string per key, which must live until its state is equivalent to no state (its
-- ttl: reset_after), so idle identities cost no memory; a denied request writes nothing.
-- Written as struct.pack('<Bi8i8i8i8', 4, a, b, c, expires_ms): a version byte 4, then a, b, c
-- and the key's expiry as last set (ms on the decision clock), as little-endian signed 64-bit
-- integers (33 bytes). A write whose state needs the key until now + ttl keeps the expiry set
-- (SET … KEEPTTL) when that is not earlier; else it sets (SET … PX) a new one,
-- ceil((now + ttl + floor(ttl / 2)) / 1000) ms. So a key never expires before its state is
-- equivalent to no state, and expires at most floor(ttl / 2) + 1 ms after the time the write
-- that set its expiry needed, ttl being that write's (ttl / 2 is at most one period: a window's
-- ttl is at most two periods, a bucket's its refill time, unless the clock went back). Decisions
-- only push that time later, so an idle key lives at most 1.5x as long as it must
-- (lua_vectors_test checks both bounds at every write).
-- Read: that; version 3 (25 bytes, '<Bi8i8i8', written by earlier floodgate_v3 builds) and the
-- text "a:b:c" floodgate_v2 wrote, both with an unknown expiry (the next write sets one), so
-- states survive the upgrade; anything else decides as no state. To read one by hand
-- (docs/redis.md):
--   $ redis-cli --no-raw GET <key>
--   "\x04@_\x8a\x03\x00\x00\x00\x00\x80gM\x00\x88(\x06\x00\x00\x00\x00\x00\x00\x00\x00\x004g\x8d\x97\x93\x01\x00\x00"
--   $ redis-cli --raw GET <key> | head -c 33 |
--       python3 -c 'import struct,sys; print(struct.unpack("<B4q", sys.stdin.buffer.read()))'
--   (4, 59400000, 1733414446000000, 0, 1733414446900)
-- a, b, c per algorithm: token_bucket (tokens x unit, at_us, 0), gcra (full_at_us, remainder,
-- 0), sliding_window (window, current, previous), fixed_window (window, count, 0):
-- docs/algorithms.md.

local MAX_EXACT = 9007199254740992 -- 2^53

-- The library functions used per call, as upvalues (cheaper than a global lookup each time).
-- Redis runs the library's top level without the standard globals, so each entry point binds
-- them on its first call.
local floor, pack, unpack_struct, byte, match, unpack_all
-- SMALL['0'] .. SMALL['1023']: the integers those arguments spell, found by a table lookup
-- rather than tonumber (a strtod each): policy indices, counts and costs are small.
local SMALL = {}
local function bind_globals()
  floor = math.floor
  pack, unpack_struct = struct.pack, struct.unpack
  byte, match = string.byte, string.match
  unpack_all = unpack
  for i = 0, 1023 do SMALL[tostring(i)] = i end
end

-- floor(a / b) for 0 <= a < 2^53, b > 0, without a call to math.floor: Lua's a % b is
-- a - floor(a / b) * b, whose quotient may be one off when a / b rounds across an integer; the
-- remainder shows it (negative, or b or more) and the quotient is corrected. (a - r) / b is
-- exact: a - r is that quotient times b.
local function idiv(a, b)
  local r = a % b
  local q = (a - r) / b
  if r < 0 then return q - 1 elseif r >= b then return q + 1 end
  return q
end

-- ceil(n / d), same domain: idiv, then up by one unless exact.
local function ceil_div(n, d)
  local r = n % d
  local q = (n - r) / d
  if r < 0 then
    q, r = q - 1, r + d
  elseif r >= d then
    q, r = q + 1, r - d
  end
  if r > 0 then return q + 1 end
  return q
end

-- Each algorithm: (has, sa, sb, sc) the state (has false: none), then cost, p1, p2, p3, now.
-- Returns allowed, reason, limit, remaining, reset_after_us, retry_after_us, write, then what
-- to write when `write`: a, b, c, ttl_us.

local function token_bucket(has, sa, sb, _, cost, burst, unit, rate, now)
  local cap = burst * unit
  local tokens, ts = cap, now
  if has then
    tokens = sa
    if tokens < 0 then tokens = 0 elseif tokens > cap then tokens = cap end
    ts = sb
  end
  local t = now
  if ts > now then t = ts end
  if t > ts and tokens < cap then
    if t - ts >= ceil_div(cap - tokens, rate) then tokens = cap else tokens = tokens + (t - ts) * rate end
  end
  local ahead = t - now
  if cost > burst then
    return 0, 2, burst, idiv(tokens, unit), ahead + ceil_div(cap - tokens, rate), 0, false
  end
  local need = cost * unit
  local allowed, reason, retry = 0, 1, 0
  if tokens >= need then
    tokens = tokens - need
    allowed, reason = 1, 0
  else
    retry = ahead + ceil_div(need - tokens, rate)
  end
  local reset = ahead + ceil_div(cap - tokens, rate)
  return allowed, reason, burst, idiv(tokens, unit), reset, retry, allowed == 1 and cost > 0,
         tokens, t, 0, reset
end

local function gcra(has, sa, sb, _, cost, burst, unit, rate, now)
  local cap = burst * unit
  local deficit = 0
  if has and (sa > now or (sa == now and sb > 0)) then
    local ahead = sa - now
    local most = idiv(MAX_EXACT, rate) - 1
    if ahead > most then ahead = most end
    local rem = sb
    if rem < 0 then rem = 0 elseif rem > rate - 1 then rem = rate - 1 end
    deficit = ahead * rate + rem
  end
  if cost > burst then
    local held = deficit
    if held > cap then held = cap end
    return 0, 2, burst, idiv(cap - held, unit), ceil_div(deficit, rate), 0, false
  end
  local need = cost * unit
  local allowed, reason, retry = 0, 1, 0
  if deficit + need <= cap then
    deficit = deficit + need
    allowed, reason = 1, 0
  else
    -- deficit - (cap - need), not deficit + need - cap: with a TAT clamped far ahead the deficit
    -- is just under 2^53, and deficit + need would round.
    retry = ceil_div(deficit - (cap - need), rate)
  end
  local held = deficit
  if held > cap then held = cap end
  local reset = ceil_div(deficit, rate)
  local whole = idiv(deficit, rate)
  return allowed, reason, burst, idiv(cap - held, unit), reset, retry, allowed == 1 and cost > 0,
         now + whole, deficit - whole * rate, 0, reset
end

local function sliding_window(has, sa, sb, sc, cost, limit, period, granule, now)
  local P = idiv(period, granule)
  local window = idiv(now, period)
  local current, previous = 0, 0
  if has then
    if sa >= window then
      window, current, previous = sa, sb, sc
    elseif sa == window - 1 then
      previous = sb
    end
    if current < 0 then current = 0 elseif current > limit then current = limit end
    if previous < 0 then previous = 0 elseif previous > limit then previous = limit end
  end
  local start = window * period
  local elapsed = now - start
  if elapsed < 0 then elapsed = 0 end
  local weight = P - idiv(elapsed, granule)
  if weight < 0 then weight = 0 end
  local to_end = start + period - now

  local allowed, reason, retry = 0, 1, 0
  if cost > limit then
    reason = 2
  elseif current + cost <= limit and previous * weight <= (limit - current - cost) * P then
    current = current + cost
    allowed, reason = 1, 0
  else
    local at
    if current + cost <= limit then
      at = P - idiv((limit - current - cost) * P, previous)
    else
      at = P + P - idiv((limit - cost) * P, current)
    end
    retry = start + at * granule - now
    if retry < 0 then retry = 0 end
  end
  local remaining = 0
  local room = (limit - current) * P - previous * weight
  if room > 0 then remaining = idiv(room, P) end
  local reset = 0
  if current > 0 then
    reset = to_end + period
  elseif previous > 0 and weight > 0 then
    reset = to_end
  end
  return allowed, reason, limit, remaining, reset, retry, allowed == 1 and cost > 0,
         window, current, previous, reset
end

local function fixed_window(has, sa, sb, _, cost, limit, period, _, now)
  local window = idiv(now, period)
  local count = 0
  if has and sa >= window then
    window = sa
    count = sb
    if count < 0 then count = 0 elseif count > limit then count = limit end
  end
  local to_end = (window + 1) * period - now
  local allowed, reason, retry = 0, 1, 0
  if cost > limit then
    reason = 2
  elseif count + cost <= limit then
    count = count + cost
    allowed, reason = 1, 0
  else
    retry = to_end
  end
  local reset = 0
  if count > 0 then reset = to_end end
  return allowed, reason, limit, limit - count, reset, retry, allowed == 1 and cost > 0,
         window, count, 0, reset
end

local ALGORITHMS = {token_bucket, gcra, sliding_window, fixed_window}

-- The state in `v` (an MGET value, false when missing): has, a, b, c, expires_ms (the
-- expiry its last write set, 0 when unknown). The packed forms first, then floodgate_v2's text;
-- anything else is not ours and decides as no state.
local function read_state(v)
  if not v then return false, 0, 0, 0, 0 end
  local n = #v
  if n == 33 then
    local version, a, b, c, e = unpack_struct('<Bi8i8i8i8', v)
    if version == 4 then return true, a, b, c, e end
  end
  if n == 25 and byte(v, 1) == 3 then
    local _, a, b, c = unpack_struct('<Bi8i8i8', v)
    return true, a, b, c, 0
  end
  local a, b, c = match(v, '^(%-?%d+):(%-?%d+):(%-?%d+)$')
  if not a then return false, 0, 0, 0, 0 end
  return true, tonumber(a), tonumber(b), tonumber(c), 0
end

-- Writes the state a, b, c of a key whose last write set expiry `expires` (ms, 0: unknown) and
-- which must now live ttl µs past `now`; returns the packed value. When the expiry already set
-- is late enough, SET … KEEPTTL: no expiry to update, no number to turn into text (together
-- ~1.7 µs of the ~2.3 µs a SET … PX costs, bench/redis_cpu.sh). Otherwise SET … PX to
--   expires = ceil((now + ttl + floor(ttl / 2)) / 1000)
-- ms on the decision clock, so the next writes of a busy key keep it. PX is relative:
-- expires - floor(now / 1000) ms from Redis's own clock, which is at or past `now` (Redis TIME,
-- read earlier in this call), so the key outlives now + ttl. Tests replaying times get the same
-- relative TTL as before.
local function write_state(key, a, b, c, ttl, now, expires)
  local needed = now + ttl
  if needed <= expires * 1000 then
    local v = pack('<Bi8i8i8i8', 4, a, b, c, expires)
    redis.call('SET', key, v, 'KEEPTTL')
    return v
  end
  expires = ceil_div(needed + floor(ttl / 2), 1000)
  local v = pack('<Bi8i8i8i8', 4, a, b, c, expires)
  redis.call('SET', key, v, 'PX', expires - idiv(now, 1000))
  return v
end

local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The policies of a call, parsed once: PA[j] its algorithm's body, PS[j] whether it is in shadow
-- mode, P1..P3[j] its parameters. Each charge of an item is (policy index, cost): CI[c], CC[c].
-- Library-wide tables, reused: calls never interleave, and every entry read was set by the
-- same call.
local PA, PS, P1, P2, P3 = {}, {}, {}, {}, {}
local CI, CC = {}, {}

-- Per-policy values kept between the two passes of a multi-policy item (the state read, what
-- to write). Reused like the tables above.
local scratch = {}

-- ENFORCED[i]: whether the i-th policy of the item being decided is enforced (not in shadow
-- mode), set by the caller before most_restrictive().
local ENFORCED = {}

-- Mirrors fg::most_restrictive over reply[base + 1 ..] (6 values per policy, n policies):
-- a denying enforced policy (longest retry) first, else the enforced one with the least
-- remaining (then the longest reset); shadow policies come first only when every policy is in
-- shadow mode. Returns its 0-based index.
local function most_restrictive(reply, base, n)
  local best = 1
  local best_enforced = ENFORCED[1]
  local best_denies = best_enforced and reply[base + 1] == 0
  for i = 2, n do
    local r = base + (i - 1) * 6
    local b = base + (best - 1) * 6
    local enforced = ENFORCED[i]
    local denies = enforced and reply[r + 1] == 0
    local better
    if denies ~= best_denies then
      better = denies
    elseif enforced ~= best_enforced then
      better = enforced
    elseif denies then
      better = reply[r + 6] > reply[b + 6]
    else
      better = reply[r + 4] < reply[b + 4] or
                 (reply[r + 4] == reply[b + 4] and reply[r + 5] > reply[b + 5])
    end
    if better then best, best_denies, best_enforced = i, denies, enforced end
  end
  return best - 1
end

-- Decides one item of n charges: keys[k0 + 1 .. k0 + n], charges CI/CC[c0 + 1 .. c0 + n].
-- values[k0 + i] is MGET's value for keys[k0 + i]; `written` (nil or a table) maps keys written
-- by earlier items of this call to their values, which take precedence. Fills reply[r0 + 1]
-- (allowed), reply[r0 + 2] (most restrictive, 0-based) and six values per policy from
-- reply[r0 + 3 + gap]. Arguments were validated by the caller.
local function decide_item(keys, k0, c0, n, now, values, written, reply, r0, gap)
  if n == 1 then
    local key = keys[k0 + 1]
    local v = written and written[key] or values[k0 + 1]
    local has, sa, sb, sc, se = read_state(v)
    local j = CI[c0 + 1]
    local allowed, reason, limit, remaining, reset, retry, write, a, b, c, ttl =
      PA[j](has, sa, sb, sc, CC[c0 + 1], P1[j], P2[j], P3[j], now)
    if write then
      v = write_state(key, a, b, c, ttl, now, se)
      if written then written[key] = v end
    end
    local r = r0 + 2 + gap
    if allowed == 1 or PS[j] then reply[r0 + 1] = 1 else reply[r0 + 1] = 0 end
    reply[r0 + 2] = 0
    reply[r + 1], reply[r + 2], reply[r + 3] = allowed, reason, limit
    reply[r + 4], reply[r + 5], reply[r + 6] = remaining, reset, retry
    return
  end

  -- First pass: decide each policy on the state as read, remembering what it would write.
  local all = true
  for i = 1, n do
    local key = keys[k0 + i]
    local v = values[k0 + i]
    if written and written[key] then v = written[key] end
    local has, sa, sb, sc, se = read_state(v)
    local j = CI[c0 + i]
    local allowed, reason, limit, remaining, reset, retry, write, a, b, c, ttl =
      PA[j](has, sa, sb, sc, CC[c0 + i], P1[j], P2[j], P3[j], now)
    ENFORCED[i] = not PS[j]
    if allowed == 0 and not PS[j] then all = false end
    local r = r0 + 2 + gap + (i - 1) * 6
    reply[r + 1], reply[r + 2], reply[r + 3] = allowed, reason, limit
    reply[r + 4], reply[r + 5], reply[r + 6] = remaining, reset, retry
    local s = (i - 1) * 10
    scratch[s + 1], scratch[s + 2], scratch[s + 3], scratch[s + 4] = has, sa, sb, sc
    scratch[s + 5], scratch[s + 6], scratch[s + 7], scratch[s + 8] = write, a, b, c
    scratch[s + 9], scratch[s + 10] = ttl, se
  end
  -- Second pass: all allowed, write; else the policies that allowed consume nothing and report
  -- what they hold untouched (cost 0 on the same state).
  for i = 1, n do
    local s = (i - 1) * 10
    local r = r0 + 2 + gap + (i - 1) * 6
    if all then
      if scratch[s + 5] then
        local key = keys[k0 + i]
        local v = write_state(key, scratch[s + 6], scratch[s + 7], scratch[s + 8], scratch[s + 9],
                              now, scratch[s + 10])
        if written then written[key] = v end
      end
    elseif reply[r + 1] == 1 then
      local j = CI[c0 + i]
      local allowed, reason, limit, remaining, reset, retry =
        PA[j](scratch[s + 1], scratch[s + 2], scratch[s + 3], scratch[s + 4], 0, P1[j], P2[j],
              P3[j], now)
      reply[r + 1], reply[r + 2], reply[r + 3] = allowed, reason, limit
      reply[r + 4], reply[r + 5], reply[r + 6] = remaining, reset, retry
    end
  end
  reply[r0 + 1] = all and 1 or 0

  reply[r0 + 2] = most_restrictive(reply, r0 + 2 + gap, n)
end

local function bad(what)
  return redis.error_reply('ERR floodgate: bad ' .. what)
end

-- An integer in [lo, hi] from an argument, or nil.
local function int_in(s, lo, hi)
  local x = tonumber(s)
  if x == nil or x < lo or x > hi or x ~= floor(x) then return nil end
  return x
end

-- Policy j from args[a + 1 .. a + 5] (alg shadow p1 p2 p3); false when the algorithm is not
-- one of ours. The parameters are not range-checked here (the store sends what
-- fg::validate_policy accepted); a value that is not a number fails the call with a Lua error
-- at its first use, before the item using it writes.
local function set_policy(j, args, a)
  local alg = args[a + 1]
  if alg == '1' then PA[j] = token_bucket
  elseif alg == '2' then PA[j] = gcra
  elseif alg == '3' then PA[j] = sliding_window
  elseif alg == '4' then PA[j] = fixed_window
  else return false end
  PS[j] = args[a + 2] ~= '0'
  P1[j], P2[j], P3[j] = tonumber(args[a + 3]), tonumber(args[a + 4]), tonumber(args[a + 5])
  return true
end

-- fg_decide_v4: the policies once per call, then (policy index, cost) per charge.
local N = {}  -- each item's charge count, read once
-- The reply, reused from call to call (a table built anew grows ~8 times to its size): Redis
-- turns it into RESP when the function returns, reading entries up to the first nil, and the
-- next call cannot start before that.
local REPLY = {}
local function decide_v4(keys, args)
  if not floor then bind_globals() end
  local nargs = #args
  local m = int_in(args[2], 1, #keys)
  local p = int_in(args[3], 1, 1023)
  if m == nil or p == nil or 3 + 5 * p > nargs then return bad('arguments') end
  local a = 3
  for j = 1, p do
    if not set_policy(j, args, a) then return bad('algorithm') end
    a = a + 5
  end
  -- Check the shape of the whole call before writing anything: counts, policy indices, costs.
  local c = 0
  for t = 1, m do
    local n = SMALL[args[a + 1]]
    if n == nil or n < 1 or a + 1 + 2 * n > nargs then return bad('arguments') end
    N[t] = n
    for i = 1, n do
      local j = SMALL[args[a + 2 * i]]
      local cs = args[a + 2 * i + 1]
      local cost = SMALL[cs] or int_in(cs, 0, MAX_EXACT)
      if j == nil or j < 1 or j > p or cost == nil then return bad('arguments') end
      CI[c + i], CC[c + i] = j, cost
    end
    a, c = a + 1 + 2 * n, c + n
  end
  if a ~= nargs or c ~= #keys then return bad('arguments') end

  local now = clock(args[1])
  local values = redis.call('MGET', unpack_all(keys))
  local written
  if m > 1 then written = {} end
  local reply = REPLY
  reply[1] = now
  local r = 1
  c = 0
  for t = 1, m do
    local n = N[t]
    decide_item(keys, c, c, n, now, values, written, reply, r, 0)
    c, r = c + n, r + 2 + 6 * n
  end
  reply[r + 1] = nil  -- Redis reads the reply up to its first nil
  return reply
end

-- Charges in the v3/v2 layout (n, then alg cost shadow p1 p2 p3 each) from args[a0 + 1]:
-- each its own policy. Returns the charge count, or nil and the error reply.
local function inline_charges(args, a0, c0, nargs)
  local n = int_in(args[a0 + 1], 1, 4096)
  if n == nil or a0 + 1 + 6 * n > nargs then return nil, bad('arguments') end
  for i = 1, n do
    local a = a0 + 1 + (i - 1) * 6
    local j = c0 + i
    -- set_policy reads alg at a + 1 and shadow .. p3 at a + 2 .. a + 5: skip over cost.
    local alg = args[a + 1]
    if alg == '1' then PA[j] = token_bucket
    elseif alg == '2' then PA[j] = gcra
    elseif alg == '3' then PA[j] = sliding_window
    elseif alg == '4' then PA[j] = fixed_window
    else return nil, bad('algorithm') end
    PS[j] = args[a + 3] ~= '0'
    P1[j], P2[j], P3[j] = tonumber(args[a + 4]), tonumber(args[a + 5]), tonumber(args[a + 6])
    CI[j], CC[j] = j, tonumber(args[a + 2])
  end
  return n
end

-- floodgate_v3's fg_decide_v3 (the release before), argument for argument and reply for reply:
--   <keys> key..  now_us m  (n_1, (alg cost shadow p1 p2 p3) x n_1) .. (n_m, ..)
local function decide_v3(keys, args)
  if not floor then bind_globals() end
  local nargs = #args
  local m = int_in(args[2], 1, #keys)
  if m == nil then return bad('arguments') end
  local a, c = 2, 0
  for _ = 1, m do
    local n, err = inline_charges(args, a, c, nargs)
    if n == nil then return err end
    a, c = a + 1 + 6 * n, c + n
  end
  if a ~= nargs or c ~= #keys then return bad('arguments') end

  local now = clock(args[1])
  local values = redis.call('MGET', unpack_all(keys))
  local written
  if m > 1 then written = {} end
  local reply = {now}
  local r
  a, c, r = 2, 0, 1
  for _ = 1, m do
    local n = tonumber(args[a + 1])
    decide_item(keys, c, c, n, now, values, written, reply, r, 0)
    a, c, r = a + 1 + 6 * n, c + n, r + 2 + 6 * n
  end
  return reply
end

-- floodgate_v2's fg_decide_v2, argument for argument and reply for reply.
local function decide_v2(keys, args)
  if not floor then bind_globals() end
  local nargs = #args
  local n, err = inline_charges(args, 1, 0, nargs)
  if n == nil then return err end
  if n ~= #keys or nargs ~= 2 + 6 * n then return bad('arguments') end
  local now = clock(args[1])
  local values = redis.call('MGET', unpack_all(keys))
  local reply = {0, 0, now}
  decide_item(keys, 0, 0, n, now, values, nil, reply, 0, 1)
  return reply
end

-- Whether args[a0 + 1 .. a0 + 6n] name known algorithms (the refund's v2/v3 layout).
local function charges_ok(args, a0, n)
  for i = 1, n do
    local alg = args[a0 + (i - 1) * 6 + 1]
    if alg ~= '1' and alg ~= '2' and alg ~= '3' and alg ~= '4' then return false end
  end
  return true
end

-- Refunds: each returns nil (nothing to give back) or a, b, c, ttl; ttl 0 deletes the state.
-- max(0, need - elapsed * rate) without passing 2^53.
local function unrefilled(need, elapsed, rate)
  if elapsed <= 0 then return need end
  if elapsed >= ceil_div(need, rate) then return 0 end
  return need - elapsed * rate
end

local function refund_token_bucket(sa, sb, _, cost, burst, unit, rate, consumed, now)
  local cap = burst * unit
  local tokens, ts = sa, sb
  if tokens < 0 then tokens = 0 elseif tokens > cap then tokens = cap end
  local t = now
  if ts > now then t = ts end
  if t > ts and tokens < cap then
    if t - ts >= ceil_div(cap - tokens, rate) then tokens = cap else tokens = tokens + (t - ts) * rate end
  end
  local back = unrefilled(cost * unit, t - consumed, rate)
  if back == 0 or tokens == cap then return nil end
  tokens = tokens + back
  if tokens > cap then tokens = cap end
  local ttl = 0
  if tokens < cap then ttl = (t - now) + ceil_div(cap - tokens, rate) end
  return tokens, t, 0, ttl
end

local function refund_gcra(sa, sb, _, cost, _, unit, rate, consumed, now)
  local deficit = 0
  if sa > now or (sa == now and sb > 0) then
    local ahead = sa - now
    local most = idiv(MAX_EXACT, rate) - 1
    if ahead > most then ahead = most end
    local rem = sb
    if rem < 0 then rem = 0 elseif rem > rate - 1 then rem = rate - 1 end
    deficit = ahead * rate + rem
  end
  local back = unrefilled(cost * unit, now - consumed, rate)
  if back == 0 or deficit == 0 then return nil end
  deficit = deficit - back
  if deficit < 0 then deficit = 0 end
  local whole = idiv(deficit, rate)
  return now + whole, deficit - whole * rate, 0, ceil_div(deficit, rate)
end

local function refund_sliding_window(sa, sb, sc, cost, limit, period, granule, consumed, now)
  local P = idiv(period, granule)
  local window = idiv(now, period)
  local current, previous = 0, 0
  if sa >= window then
    window, current, previous = sa, sb, sc
  elseif sa == window - 1 then
    previous = sb
  end
  if current < 0 then current = 0 elseif current > limit then current = limit end
  if previous < 0 then previous = 0 elseif previous > limit then previous = limit end
  local consumed_window = idiv(consumed, period)
  if window == consumed_window and current > 0 then
    current = current - cost
    if current < 0 then current = 0 end
  elseif window == consumed_window + 1 and previous > 0 then
    previous = previous - cost
    if previous < 0 then previous = 0 end
  else
    return nil
  end
  local start = window * period
  local elapsed = now - start
  if elapsed < 0 then elapsed = 0 end
  local weight = P - idiv(elapsed, granule)
  if weight < 0 then weight = 0 end
  local to_end = start + period - now
  local ttl = 0
  if current > 0 then
    ttl = to_end + period
  elseif previous > 0 and weight > 0 then
    ttl = to_end
  end
  return window, current, previous, ttl
end

local function refund_fixed_window(sa, sb, _, cost, limit, period, _, consumed, now)
  local window = idiv(now, period)
  if sa > window then window = sa end
  if sa ~= window or window ~= idiv(consumed, period) then return nil end
  local count = sb
  if count < 0 then count = 0 elseif count > limit then count = limit end
  if count == 0 then return nil end
  count = count - cost
  if count < 0 then count = 0 end
  local ttl = 0
  if count > 0 then ttl = (window + 1) * period - now end
  return window, count, 0, ttl
end

local REFUNDS = {refund_token_bucket, refund_gcra, refund_sliding_window, refund_fixed_window}

-- fg_refund_v3 and fg_refund_v2 (the same arguments and reply).
local function refund(keys, args)
  if not floor then bind_globals() end
  local consumed = tonumber(args[2])
  local n = tonumber(args[3])
  if consumed == nil or n == nil or n < 1 or n ~= #keys or #args ~= 3 + 6 * n then
    return bad('arguments')
  end
  if not charges_ok(args, 3, n) then return bad('algorithm') end
  local now = clock(args[1])
  local values = redis.call('MGET', unpack_all(keys))
  local written, deleted = 0, nil
  for i = 1, n do
    local p = 3 + (i - 1) * 6
    local cost = tonumber(args[p + 2])
    local key = keys[i]
    local has, sa, sb, sc, se = read_state(values[i])
    -- Every charge is computed from the state read first (a policy given twice: the last
    -- write wins, and none follows a deletion), as in the memory store.
    if has and cost > 0 and not (deleted and deleted[key]) then
      local a, b, c, ttl = REFUNDS[tonumber(args[p + 1])](sa, sb, sc, cost, tonumber(args[p + 4]),
                                                          tonumber(args[p + 5]),
                                                          tonumber(args[p + 6]), consumed, now)
      if a then
        if ttl > 0 then
          write_state(key, a, b, c, ttl, now, se)
        else
          redis.call('DEL', key)
          deleted = deleted or {}
          deleted[key] = true
        end
        written = written + 1
      end
    end
  end
  return written
end

-- Concurrency (algorithm 5): requests in flight, in functions of their own. Each concurrency
-- policy of an identity is a sorted set at its key: one member per request holding a slot (its
-- lease id), scored by the lease's expiry in µs on the decision clock. A request takes a slot
-- when every policy allows it, and gives it back with fg_release_v4 when its response ends; a
-- lease that is not renewed (its instance died) expires and its slot is free again. Mirrors
-- core::apply_concurrency and fg::evaluate (src/core/limiter.cc).
--
-- FCALL fg_acquire_v4 <n> key_1 .. key_n  now_us lease_id n  (alg cost shadow p1 p2 p3) x n
--   one all-or-nothing decision over rate policies (alg 1-4, as fg_decide_v4) and concurrency
--   policies (alg 5: p1 limit, p2 lease_us, p3 0); a concurrency charge with cost > 0 takes one
--   slot. Reply: now_us, allowed, most restrictive, then 6 per policy (one item of fg_decide_v4's reply).
-- FCALL fg_release_v4 <n> key_1 .. key_n  now_us lease_id renew lease_us_1 .. lease_us_n
--   renew 0: the lease's slot is given back at every key; 1: its expiry becomes now + lease_us
--   where it is still held. Reply: the number of slots given back or renewed.
local CONCURRENCY_RETRY_US = 1000000 -- kConcurrencyRetryAfter: a slot frees when a response ends

-- The live slots at `key` (leases expired by `now` dropped). A key holding anything else (a
-- state of another algorithm, left by a policy whose algorithm a reload changed) is dropped.
local function held_slots(key, now)
  local r = redis.pcall('ZREMRANGEBYSCORE', key, '-inf', now)
  if type(r) == 'table' and r.err then
    redis.call('DEL', key)
    return 0
  end
  return redis.call('ZCARD', key)
end

-- The key lives at least `ms` more: set when it has no expiry (NX), else only pushed later (GT).
-- Never shortened, so a shorter lease (a reload, or another instance's config during a rolling
-- change) cannot expire other requests' slots with the key.
local function keep_until(key, ms)
  redis.call('PEXPIRE', key, ms, 'NX')
  redis.call('PEXPIRE', key, ms, 'GT')
end

local function concurrency(held, cost, limit)
  local take = 0
  if cost > 0 then take = 1 end
  if held + take <= limit then
    return 1, 0, limit, limit - held - take, 0, 0, take > 0
  end
  local remaining = 0
  if held < limit then remaining = limit - held end
  return 0, 1, limit, remaining, 0, CONCURRENCY_RETRY_US, false
end

local function acquire(keys, args)
  if not floor then bind_globals() end
  local n = tonumber(args[3])
  if n == nil or n < 1 or n ~= #keys or #args ~= 3 + 6 * n then return bad('arguments') end
  for i = 1, n do
    local alg = args[3 + (i - 1) * 6 + 1]
    if alg ~= '1' and alg ~= '2' and alg ~= '3' and alg ~= '4' and alg ~= '5' then
      return bad('algorithm')
    end
  end
  local now = clock(args[1])
  local lease = args[2]
  local reply = {now, 0, 0}
  local values       -- MGET of every key, read at the first rate policy
  local pending = {} -- per policy: what it writes if all allow (false: nothing)
  local states = {}  -- per policy: the state read, for a look at cost 0
  local all = true
  for i = 1, n do
    local p = 3 + (i - 1) * 6
    local alg, cost = tonumber(args[p + 1]), tonumber(args[p + 2])
    local p1, p2, p3 = tonumber(args[p + 4]), tonumber(args[p + 5]), tonumber(args[p + 6])
    local r = 3 + (i - 1) * 6
    local allowed, reason, limit, remaining, reset, retry, write, a, b, c, ttl
    if alg == 5 then
      local held = held_slots(keys[i], now)
      states[i] = held
      allowed, reason, limit, remaining, reset, retry, write = concurrency(held, cost, p1)
      if write then pending[i] = {true, p2} else pending[i] = false end
    else
      -- MGET reads a sorted set left by another algorithm as nil: no state.
      if not values then values = redis.call('MGET', unpack_all(keys)) end
      local has, sa, sb, sc, se = read_state(values[i])
      states[i] = {has, sa, sb, sc}
      allowed, reason, limit, remaining, reset, retry, write, a, b, c, ttl =
        ALGORITHMS[alg](has, sa, sb, sc, cost, p1, p2, p3, now)
      if write then pending[i] = {false, a, b, c, ttl, se} else pending[i] = false end
    end
    ENFORCED[i] = args[p + 3] == '0'
    if allowed == 0 and args[p + 3] == '0' then all = false end
    reply[r + 1], reply[r + 2], reply[r + 3] = allowed, reason, limit
    reply[r + 4], reply[r + 5], reply[r + 6] = remaining, reset, retry
  end
  for i = 1, n do
    local p = 3 + (i - 1) * 6
    local r = 3 + (i - 1) * 6
    if all then
      local w = pending[i]
      if w and w[1] then
        local lease_us = w[2]
        redis.call('ZADD', keys[i], now + lease_us, lease)
        keep_until(keys[i], ceil_div(lease_us, 1000) + 1)
      elseif w then
        write_state(keys[i], w[2], w[3], w[4], w[5], now, w[6])
      end
    elseif reply[r + 1] == 1 then
      -- Another policy denied: this one takes nothing and reports what it holds untouched.
      local alg = tonumber(args[p + 1])
      local p1, p2, p3 = tonumber(args[p + 4]), tonumber(args[p + 5]), tonumber(args[p + 6])
      local allowed, reason, limit, remaining, reset, retry
      if alg == 5 then
        allowed, reason, limit, remaining, reset, retry = concurrency(states[i], 0, p1)
      else
        local st = states[i]
        allowed, reason, limit, remaining, reset, retry =
          ALGORITHMS[alg](st[1], st[2], st[3], st[4], 0, p1, p2, p3, now)
      end
      reply[r + 1], reply[r + 2], reply[r + 3] = allowed, reason, limit
      reply[r + 4], reply[r + 5], reply[r + 6] = remaining, reset, retry
    end
  end
  reply[2] = all and 1 or 0
  reply[3] = most_restrictive(reply, 3, n)
  return reply
end

local function release(keys, args)
  if not floor then bind_globals() end
  local n = #keys
  if n < 1 or #args ~= 3 + n or (args[3] ~= '0' and args[3] ~= '1') then
    return bad('arguments')
  end
  local now = clock(args[1])
  local lease = args[2]
  local done = 0
  for i = 1, n do
    if args[3] == '0' then
      local r = redis.pcall('ZREM', keys[i], lease)
      if type(r) == 'number' then done = done + r end
    else
      local lease_us = tonumber(args[3 + i])
      local r = redis.pcall('ZADD', keys[i], 'XX', 'CH', now + lease_us, lease)
      if type(r) == 'number' and redis.call('ZSCORE', keys[i], lease) then
        keep_until(keys[i], ceil_div(lease_us, 1000) + 1)
        done = done + 1
      end
    end
  end
  return done
end

redis.register_function('fg_decide_v4', decide_v4)
redis.register_function('fg_acquire_v4', acquire)
redis.register_function('fg_release_v4', release)
redis.register_function('fg_decide_v3', decide_v3)
redis.register_function('fg_refund_v3', refund)
redis.register_function('fg_decide_v2', decide_v2)
redis.register_function('fg_refund_v2', refund)
