-- The node agent's hot path with many pods: each request carries the next of N pod tokens (one per
-- line of the file given after `--`), round robin, as N pods sharing one node agent would.
-- Prints the same BENCHJSON summary as report.lua.
local tokens = {}
local next_index = 1

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  if #tokens == 0 then error('rotate-tokens.lua: no tokens in ' .. tostring(args[1])) end
end

function request()
  local token = tokens[next_index]
  next_index = next_index % #tokens + 1
  return wrk.format('GET', nil, { ['Authorization'] = token })
end

dofile(os.getenv('CROSSCRED_BENCH_LUA') .. '/report.lua')
