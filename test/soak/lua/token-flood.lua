-- A flood of IMDSv2 session-token PUTs on keep-alive connections, TTLs spread over 1-21600 s.
-- Every answer must be a 200 carrying a token and the TTL header.
local n = 0

function request()
  n = n + 1
  return wrk.format("PUT", "/latest/api/token", { ["X-aws-ec2-metadata-token-ttl-seconds"] = tostring(n % 21600 + 1) }), "token"
end

function response(status, headers, body)
  if status ~= 200 then return end
  for k, _ in pairs(headers) do
    if string.lower(k) == "x-aws-ec2-metadata-token-ttl-seconds" and #body > 0 then
      bump(kinds, "token")
      return
    end
  end
  bump(kinds, "unexpected")
end

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
