-- Shared by the soak's wrk scripts, dofile'd at their end. A script defines request(), returning
-- the request and its class (a key of `sent`), and optionally init(args), response(status,
-- headers, body) to classify 200s into `kinds`, and delay() to pace its connections. This file
-- wraps them so that every request the run sends is accounted for exactly, and prints one line,
-- SOAKJSON {...}, for test/soak/soak.mjs to parse.
--
-- Why the wrapping: counting request() calls against response() calls is off in two ways with
-- wrk 4.1 as it stands, and the difference used to be absorbed by an "in-flight allowance":
--  1. wrk calls request() once more than it sends: before starting its threads it calls it on
--     thread 0's Lua state to check that the script makes a parseable request
--     (script_verify_request in wrk's src/script.c). That request is never written anywhere.
--  2. wrk stops at -d by abandoning its event loop at the next 100-ms tick, with one request
--     outstanding on nearly every connection; and it never times out a request that is not
--     answered (its --timeout only classifies answers that come late), so a request the daemon
--     dropped looks exactly like one that was in flight at the end.
-- With 8 connections the two made "9 requests unanswered" against an allowance of 8, and no
-- allowance could tell a dropped request from an abandoned one.
--
-- What happens instead:
--  * request() calls made before the Lua state's first delay() call are wrk's verification call:
--    with a delay() function defined, wrk asks delay() before every connection's first request,
--    so such a call cannot have been sent. They are counted apart (verifyCalls), not as sent.
--  * SOAK_SEND_MS (environment) is how long to send, from init(). After that the generator
--    drains: delay() parks every connection instead of letting it send again, and once every
--    request sent has its answer the thread stops itself (wrk.thread:stop()). The soak gives wrk
--    a -d longer than SOAK_SEND_MS by the drain window; a request still unanswered when wrk's
--    own stop comes is lost, and shows as sent minus answered.
-- So at the end: sent = answered (by status) + unanswered, all exact, and a healthy run has
-- unanswered = 0 with every thread stopped by its drain. A refused connection costs no request
-- (wrk calls request() only once a connection is up); wrk's connect/read/write error counts
-- are reported alongside.
-- Latencies are in microseconds.
statuses = {} -- HTTP status → responses received
kinds = {}    -- what a 200 turned out to be (script-specific) → count
sent = {}     -- script-specific request class → requests written
verifyCalls = 0            -- request() calls wrk made only to check the script
inFlightAtSendEnd = -1     -- requests outstanding when sending stopped (-1: not reached)
drainedAfterMs = -1        -- ms from the end of sending until the last answer (-1: never drained)

function bump(tbl, key)
  tbl[key] = (tbl[key] or 0) + 1
end

-- A monotonic millisecond clock: wrk's Lua is LuaJIT, whose FFI reaches clock_gettime.
local nowMs
do
  local ok, ffi = pcall(require, "ffi")
  if ok then
    ffi.cdef [[
      typedef struct { long tv_sec; long tv_nsec; } soak_timespec;
      int clock_gettime(int clk_id, soak_timespec *tp);
    ]]
    local ts = ffi.new("soak_timespec")
    nowMs = function()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
    end
  else
    nowMs = function() return os.time() * 1000 end
  end
end

-- A parked connection waits this long, far beyond the run: the thread stops before it fires.
local PARK_MS = 3600 * 1000

local scriptRequest, scriptResponse, scriptDelay, scriptInit = request, response, delay, init
local sendUntil = math.huge
local delayAsked = false
local outstanding = 0
local stopping = false

function init(args)
  local sendMs = tonumber(os.getenv("SOAK_SEND_MS") or "")
  if sendMs then sendUntil = nowMs() + sendMs end
  if scriptInit then scriptInit(args) end
end

-- True once sending has ended; the first time, notes how many requests were outstanding then
-- (no callback ran between the end of sending and this one, so the count is the one at the end).
local function sendingOver()
  if sendUntil == math.huge or nowMs() < sendUntil then return false end
  if inFlightAtSendEnd < 0 then inFlightAtSendEnd = outstanding end
  return true
end

local function stopIfDrained()
  if stopping or outstanding > 0 then return end
  stopping = true
  drainedAfterMs = nowMs() - sendUntil
  wrk.thread:stop()
end

function request()
  local req, class = scriptRequest()
  if not delayAsked then
    verifyCalls = verifyCalls + 1
  else
    bump(sent, class)
    outstanding = outstanding + 1
  end
  return req
end

function response(status, headers, body)
  bump(statuses, tostring(status))
  outstanding = outstanding - 1
  if scriptResponse then scriptResponse(status, headers, body) end
  if sendingOver() then stopIfDrained() end
end

function delay()
  delayAsked = true
  if sendingOver() then
    stopIfDrained()
    return PARK_MS
  end
  return scriptDelay and scriptDelay() or 0
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
  local verify, inFlight, drainedThreads, drainMs = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    for name, into in pairs(merged) do
      local got = t:get(name)
      if type(got) == "table" then
        for k, v in pairs(got) do into[k] = (into[k] or 0) + v end
      end
    end
    verify = verify + (t:get("verifyCalls") or 0)
    inFlight = inFlight + math.max(0, t:get("inFlightAtSendEnd") or 0)
    local d = t:get("drainedAfterMs") or -1
    if d >= 0 then
      drainedThreads = drainedThreads + 1
      drainMs = math.max(drainMs, d)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'SOAKJSON {"requests":%d,"durationUs":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"p50":%d,"p99":%d,"p999":%d,"max":%d},"statuses":%s,"kinds":%s,"sent":%s,' ..
    '"drain":{"threads":%d,"drainedThreads":%d,"inFlightAtSendEnd":%d,"drainedAfterMs":%.3f,"verifyCalls":%d}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    encode(merged.statuses), encode(merged.kinds), encode(merged.sent),
    #threads, drainedThreads, inFlight, drainMs, verify))
end
