-- Container-endpoint GETs with "Connection: close": every request on a new connection, so the
-- daemon accepts and closes connections all through the soak. Paced by delay() so the client's
-- TIME_WAIT sockets never exhaust the ephemeral port range over a long run.
-- Arguments (after --): the Authorization secret, the pause between requests per connection (ms).
local secret, pause

function init(args)
  secret = args[1]
  pause = tonumber(args[2]) or 0
end

function request()
  return wrk.format("GET", "/v1/credentials", { ["Authorization"] = secret, ["Connection"] = "close" }), "credentials"
end

function delay()
  return pause
end

function response(status, headers, body)
  if status ~= 200 then return end
  if body:find('"AccessKeyId"', 1, true) and body:find('"RoleArn"', 1, true) and body:find('"Expiration"', 1, true) then
    bump(kinds, "credentials")
  else
    bump(kinds, "unexpected")
  end
end

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
