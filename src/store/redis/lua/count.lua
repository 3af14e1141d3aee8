#!lua name=floodgate_count_v1
-- count.lua — Envoy's ratelimit service's counters: INCRBY and EXPIRE per key, as
-- envoyproxy/ratelimit sends them, one FCALL for the counters of one request (of one hash slot on
-- a Redis Cluster). A library of its own (floodgate_count_v1), loaded beside floodgate_v3 on the
-- first count a node is asked for; it never touches floodgate_v3's keys.
--
--   FCALL fg_count_v1 <n> key_1 .. key_n  (hits ttl_s) x n
--
--   hits   > 0: INCRBY key hits, then EXPIRE key ttl_s (the counter's window is in its name, so
--          the expiry only bounds memory); 0: GET key, nothing written (a look, for
--          STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT's first pass and hits_addend 0).
--
-- Reply: one integer per key, the counter after the hits (0 for a missing key). Each key is
-- counted on its own, as upstream's pipeline counts them; the call as a whole is atomic anyway.
-- The keys are the instance's (upstream's names, window start included); no clock is read here.

local function count(keys, args)
  local out = {}
  for i = 1, #keys do
    local hits = tonumber(args[2 * i - 1])
    if hits == nil or hits < 0 then
      return redis.error_reply('ERR fg_count_v1: bad hits for key ' .. i)
    end
    if hits > 0 then
      out[i] = redis.call('INCRBY', keys[i], hits)
      redis.call('EXPIRE', keys[i], args[2 * i])
    else
      out[i] = tonumber(redis.call('GET', keys[i]) or '0') or 0
    end
  end
  return out
end

redis.register_function('fg_count_v1', count)
