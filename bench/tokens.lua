-- wrk script of the benchmark: every request is GET /bench with `x-ext-authz: allow`, and, when a
-- token file is given, `Authorization: Bearer <token>` rotating through the file's lines (one
-- line: the same token every time; N lines: N distinct tokens, in order, round and round).
--
--   wrk -t1 -c16 -d5s -s bench/tokens.lua http://127.0.0.1:PORT -- [TOKEN_FILE]
--
-- Every scenario goes through this script (with or without a token file), so wrk does the same
-- work per request everywhere. The requests are formatted once, in init(). done() prints one line
-- `WRK_JSON {...}` that bench/run reads: requests, duration, errors, latency percentiles (µs).

local requests = {}
local count = 0
local next_index = 0

function init(args)
  local base = {}
  for name, value in pairs(wrk.headers) do
    base[name] = value
  end
  base["x-ext-authz"] = "allow"
  local file = args[1]
  if file ~= nil and file ~= "" and file ~= "-" then
    for line in io.lines(file) do
      if line ~= "" then
        local headers = {}
        for name, value in pairs(base) do
          headers[name] = value
        end
        headers["Authorization"] = "Bearer " .. line
        count = count + 1
        requests[count] = wrk.format("GET", "/bench", headers)
      end
    end
  end
  if count == 0 then
    count = 1
    requests[1] = wrk.format("GET", "/bench", base)
  end
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"mean":%.1f,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
