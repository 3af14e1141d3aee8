-- load.lua — the soak's load: a paced stream of requests with ever new client keys, for wrk.
--
--   SOAK_KEY_PREFIX=a7 SOAK_DELAY_MS=10 SOAK_REQUESTS_PER_KEY=12 \
--     wrk -t1 -c5 -d10s -s tests/soak/load.lua http://127.0.0.1:PORT
--
-- Pacing: every connection waits SOAK_DELAY_MS after each response before sending its next
-- request (wrk's delay() hook; wrk starts the latency clock when it writes, so the wait is not
-- counted as latency). Rate ~ connections x 1000 / (SOAK_DELAY_MS + latency).
--
-- Key churn: each thread names its requests' client (X-API-Key) "<prefix>-<thread>-<n>", n going
-- up by one every SOAK_REQUESTS_PER_KEY requests, so clients keep appearing and the old ones'
-- states must expire. The prefix differs between wrk runs, so no key is ever reused. One request
-- in 50 has no key (identity: the client IP, one hot key that is mostly denied).
--
-- Paths cycle through /api/items/N, /api/search, POST /api/login and /api/export/report, so
-- several policies (and algorithms) decide. Each response is counted by status and by whether it
-- carries X-RateLimit-Degraded; done() prints one tab-separated line:
--   requests duration_us connect read write timeout p50_us p90_us p99_us max_us
--   n200 n429 nother ndegraded other_statuses
-- ("other_statuses": "code:count,..." or "-").

local prefix = os.getenv("SOAK_KEY_PREFIX") or "k"
local delay_ms = tonumber(os.getenv("SOAK_DELAY_MS") or "10")
local per_key = tonumber(os.getenv("SOAK_REQUESTS_PER_KEY") or "12")

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state).
tid = 0
n = 0
n200 = 0
n429 = 0
nother = 0
ndegraded = 0
others = {}

function delay()
  return delay_ms
end

function request()
  local i = n
  n = n + 1
  local headers = {}
  if i % 50 ~= 49 then
    headers["X-API-Key"] = prefix .. "-" .. tid .. "-" .. math.floor(i / per_key)
  end
  local slot = i % 10
  if slot == 7 then
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", "/api/login", headers, '{"user":"soak"}')
  elseif slot == 8 then
    return wrk.format("GET", "/api/export/report", headers)
  elseif slot == 9 then
    return wrk.format("GET", "/api/search?q=" .. i, headers)
  end
  return wrk.format("GET", "/api/items/" .. i, headers)
end

function response(status, headers, body)
  if status == 200 then
    n200 = n200 + 1
  elseif status == 429 then
    n429 = n429 + 1
  else
    nother = nother + 1
    others[status] = (others[status] or 0) + 1
  end
  if headers["X-RateLimit-Degraded"] or headers["x-ratelimit-degraded"] then
    ndegraded = ndegraded + 1
  end
end

function done(summary, latency, requests)
  local c = {n200 = 0, n429 = 0, nother = 0, ndegraded = 0}
  local other = {}
  for _, t in ipairs(threads) do
    for k, _ in pairs(c) do
      c[k] = c[k] + t:get(k)
    end
    for code, count in pairs(t:get("others")) do
      other[code] = (other[code] or 0) + count
    end
  end
  local list = {}
  for code, count in pairs(other) do
    table.insert(list, code .. ":" .. count)
  end
  local e = summary.errors
  io.write(string.format("%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    c.n200, c.n429, c.nother, c.ndegraded, #list > 0 and table.concat(list, ",") or "-"))
end
