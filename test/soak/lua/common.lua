-- Shared by the soak's wrk scripts (dofile'd at their end). Each thread counts what it saw in
-- global tables; done() gathers every thread's tables (thread:get copies them out) and prints one
-- line, SOAKJSON {...}, for test/soak/soak.mjs to parse. Latencies are in microseconds.
statuses = {} -- HTTP status → responses received
kinds = {}    -- what a 200 turned out to be (script-specific) → count
sent = {}     -- script-specific request class → requests written

function bump(tbl, key)
  tbl[key] = (tbl[key] or 0) + 1
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function encode(tbl)
  local parts = {}
  for k, v in pairs(tbl) do
    table.insert(parts, string.format('"%s":%d', tostring(k), v))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local merged = { statuses = {}, kinds = {}, sent = {} }
  for _, t in ipairs(threads) do
    for name, into in pairs(merged) do
      local got = t:get(name)
      if type(got) == "table" then
        for k, v in pairs(got) do into[k] = (into[k] or 0) + v end
      end
    end
  end
  local e = summary.errors
  io.write(string.format(
    'SOAKJSON {"requests":%d,"durationUs":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"p50":%d,"p99":%d,"p999":%d,"max":%d},"statuses":%s,"kinds":%s,"sent":%s}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    encode(merged.statuses), encode(merged.kinds), encode(merged.sent)))
end
