-- A flood of requests the daemon must refuse, each with the status docs/endpoints.md and
-- its matching rules document, sent in rotation on keep-alive connections (a 413 closes its
-- connection; wrk reconnects). wrk cannot tell which connection an answer belongs to, so the
-- check is on totals: sent[s] counts requests expecting status s, statuses[s] answers with s.
-- Every answer must have an expected status, and per status the two counts must be equal: the
-- run drains before it stops (common.lua), so no request is left in flight.
-- Arguments (after --): a valid session token, an expired one, a forged one (right shape, wrong
-- MAC), the role name, the container secret.
local cases = {}
local i = 0

local function case(expect, method, path, headers, body)
  table.insert(cases, { expect = tostring(expect), req = wrk.format(method, path, headers or {}, body) })
end

function init(args)
  local valid, expired, forged, role, secret = args[1], args[2], args[3], args[4], args[5]
  local creds = "/latest/meta-data/iam/security-credentials/"
  local ttl = "X-aws-ec2-metadata-token-ttl-seconds"
  local tok = "X-aws-ec2-metadata-token"
  -- 404: unknown paths (matching is byte for byte: no case folding, no normalisation)
  case(404, "GET", "/nope")
  case(404, "GET", "/LATEST/api/token")
  case(404, "GET", "//latest/meta-data/iam/security-credentials/", { [tok] = valid })
  case(404, "GET", creds .. role .. "/", { [tok] = valid })
  case(404, "GET", "/latest/meta-data/placement/availability-zone", { [tok] = valid })
  case(404, "GET", creds .. "not-" .. role, { [tok] = valid })
  case(404, "GET", "/v1/credentials/not-" .. role, { ["Authorization"] = secret })
  -- 401: IMDS reads without a valid session token; container reads without the secret
  case(401, "GET", creds .. role)
  case(401, "GET", creds .. role, { [tok] = forged })
  case(401, "GET", creds .. role, { [tok] = expired })
  case(401, "GET", creds, { [tok] = valid:sub(1, #valid - 4) })
  case(401, "GET", "/v1/credentials")
  -- 403: wrong container secret, a forwarded token request, a foreign Host (DNS rebinding)
  case(403, "GET", "/v1/credentials", { ["Authorization"] = "not-the-secret" })
  case(403, "GET", "/v1/credentials/" .. role, { ["Authorization"] = secret .. "x" })
  case(403, "PUT", "/latest/api/token", { [ttl] = "60", ["X-Forwarded-For"] = "203.0.113.9" })
  case(403, "PUT", "/latest/api/token", { [ttl] = "60", ["x-FORWARDED-for"] = "10.0.0.1" })
  case(403, "GET", creds .. role, { [tok] = valid, ["Host"] = "attacker.example" })
  -- 405: a known path, the wrong method
  case(405, "POST", "/latest/api/token", { [ttl] = "60" })
  case(405, "DELETE", "/v1/credentials", { ["Authorization"] = secret })
  case(405, "PUT", creds .. role, { [tok] = valid })
  -- 400: a missing or invalid TTL, a malformed escape in the role segment
  case(400, "PUT", "/latest/api/token")
  case(400, "PUT", "/latest/api/token", { [ttl] = "0" })
  case(400, "PUT", "/latest/api/token", { [ttl] = "21601" })
  case(400, "PUT", "/latest/api/token", { [ttl] = "1e3" })
  case(400, "GET", creds .. "%zz", { [tok] = valid })
  -- 414: a role segment over 128 characters
  case(414, "GET", creds .. string.rep("r", 200), { [tok] = valid })
  -- 413: a body over 1 KiB (the connection is closed after the answer)
  case(413, "PUT", "/latest/api/token", { [ttl] = "60" }, string.rep("b", 2048))
end

function request()
  i = i % #cases + 1
  local c = cases[i]
  return c.req, c.expect
end

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
