-- The IMDSv2 credential lookup the AWS SDKs make, on keep-alive connections:
--   PUT /latest/api/token, GET .../security-credentials/, GET .../security-credentials/<role>.
-- wrk keeps one Lua state per thread, not per connection, so the three steps rotate across the
-- thread's connections and the GETs carry the newest token any PUT returned (session tokens are
-- stateless: every token the listener issued is valid on any connection).
-- Every answer must be a 200; each 200 is classified by its content (token, role list,
-- credential document) and anything else is counted as "unexpected".
-- Arguments (after --): an initial session token, the role name.
local token, role
local step = 0
local CREDS = "/latest/meta-data/iam/security-credentials/"

function init(args)
  token = args[1]
  role = args[2]
end

function request()
  step = step % 3 + 1
  if step == 1 then
    return wrk.format("PUT", "/latest/api/token", { ["X-aws-ec2-metadata-token-ttl-seconds"] = "21600" }), "token"
  elseif step == 2 then
    return wrk.format("GET", CREDS, { ["X-aws-ec2-metadata-token"] = token }), "list"
  end
  return wrk.format("GET", CREDS .. role, { ["X-aws-ec2-metadata-token"] = token }), "credentials"
end

function response(status, headers, body)
  if status ~= 200 then return end
  for k, v in pairs(headers) do
    if string.lower(k) == "x-aws-ec2-metadata-token-ttl-seconds" then
      if v == "21600" and #body > 0 then
        token = body
        bump(kinds, "token")
      else
        bump(kinds, "unexpected")
      end
      return
    end
  end
  if body == role then
    bump(kinds, "list")
  elseif body:find('"AccessKeyId"', 1, true) and body:find('"Success"', 1, true) and body:find('"Expiration"', 1, true) then
    bump(kinds, "credentials")
  else
    bump(kinds, "unexpected")
  end
end

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
