-- keys.lua — the wrk workload of bench/report.sh: every request is GET <url> with an X-API-Key
-- drawn uniformly at random out of NKEYS keys, so every target sees the same mix of clients.
--
--   wrk -t2 -c50 -d10s --latency -s bench/wrk/keys.lua URL -- NKEYS PREFIX
--
-- PREFIX makes the keys of one run distinct from every other run's (no state carries over).
-- Requests are formatted once in init(); request() only picks one. The run ends with a single
-- line "wrk-result k=v ..." (latencies in µs; bytes: every byte read, answers whole) that
-- report.sh parses.
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local nkeys = tonumber(args[1]) or 10000
  local prefix = args[2] or "key"
  prepared = {}
  for i = 1, nkeys do
    prepared[i] = wrk.format("GET", nil, { ["X-API-Key"] = prefix .. "-" .. i })
  end
  -- Each thread draws its own sequence.
  math.randomseed(os.time() + 7919 * id)
  allowed, limited, other = 0, 0, 0
end

function request()
  return prepared[math.random(#prepared)]
end

function response(status)
  if status == 200 then
    allowed = allowed + 1
  elseif status == 429 then
    limited = limited + 1
  else
    other = other + 1
  end
end

function done(summary, latency, _)
  local a, l, o = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("allowed")
    l = l + t:get("limited")
    o = o + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    "wrk-result requests=%d duration_us=%d p50_us=%d p99_us=%d p999_us=%d max_us=%d " ..
    "s200=%d s429=%d sother=%d errors=%d bytes=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, a, l, o,
    e.connect + e.read + e.write + e.timeout, summary.bytes))
end
