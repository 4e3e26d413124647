-- wrk script for scripts/bench-service: `wrk ... -s wrk-lines.lua URL -- FILE THREADS`.
-- With FILE ("path<TAB>body" lines, or "path<TAB>body<TAB>authorization" for requests a
-- device signed), thread i of THREADS POSTs lines i, i + THREADS, ...
-- (each line once per pass); with FILE "-", POSTs issueCode with a fresh delivery id each
-- time. BENCH_TOKEN is the API token.
local counter = 0
local lines = {}
local threads = 1
local count = 0

function setup(thread)
  thread:set("id", count)
  count = count + 1
end

function init(args)
  if args[1] and args[1] ~= "-" then
    for line in io.lines(args[1]) do
      local path, rest = line:match("^([^\t]+)\t(.*)$")
      local body, signed = rest:match("^([^\t]*)\t(.+)$")
      table.insert(lines, { path, body or rest, signed })
    end
  end
  threads = tonumber(args[2] or "1")
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
  wrk.headers["Content-Type"] = "application/json"
end

local order = '{"value_minor":15000,"currency":"EUR","method":"hand_to_customer","categories":[],"region_risk":10,' ..
  '"customer_preference":"none","first_delivery_to_address":false,"not_received_claims":0}'

function request()
  counter = counter + 1
  if #lines > 0 then
    local entry = lines[((counter - 1) * threads + id) % #lines + 1]
    if entry[3] then
      return wrk.format("POST", entry[1], { ["Authorization"] = entry[3], ["Content-Type"] = "application/json" },
        entry[2])
    end
    return wrk.format("POST", entry[1], nil, entry[2])
  end
  local body = '{"delivery_id":"B-' .. os.time() .. '-' .. id .. '-' .. counter ..
    '","courier_id":"bench-courier","order":' .. order .. ',"contact":{"phone":"+441234567890"}}'
  return wrk.format("POST", "/v1/deliveries", nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("BENCH rps=%.0f p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f requests=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, summary.requests, summary.errors.status))
end
