-- The IMDSv2 credential lookup as the AWS SDKs make it, request after request:
--   PUT /latest/api/token, GET /latest/meta-data/iam/security-credentials/, GET .../<role>.
-- wrk keeps one Lua state per thread (not per connection), so the three steps rotate across the
-- thread's connections; the GETs carry the newest session token any PUT returned (every token the
-- daemon issued is valid, so which connection fetched it does not matter).
-- Arguments (after --): initial session token, role name, "keepalive" or "close".
local token, role, close = nil, nil, false
local step = 0

function init(args)
  token = args[1]
  role = args[2]
  close = args[3] == "close"
end

local function headers(h)
  if close then h["Connection"] = "close" end
  return h
end

function request()
  step = step % 3 + 1
  if step == 1 then
    return wrk.format("PUT", "/latest/api/token", headers({ ["X-aws-ec2-metadata-token-ttl-seconds"] = "21600" }))
  elseif step == 2 then
    return wrk.format("GET", "/latest/meta-data/iam/security-credentials/", headers({ ["X-aws-ec2-metadata-token"] = token }))
  end
  return wrk.format("GET", "/latest/meta-data/iam/security-credentials/" .. role, headers({ ["X-aws-ec2-metadata-token"] = token }))
end

function response(status, hdrs, body)
  if status ~= 200 then return end
  for k, _ in pairs(hdrs) do
    if string.lower(k) == "x-aws-ec2-metadata-token-ttl-seconds" then
      token = body
      return
    end
  end
end

-- The summary line (done) is shared with the single-request scenarios: report.lua, beside this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")
