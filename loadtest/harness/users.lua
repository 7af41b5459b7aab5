-- wrk script: POST /tts from many distinct users (see loadtest/harness/population.py, which passes
-- the population as arguments: wrk ... -s users.lua URL -- USERS REGIONS_CSV DEVICES_CSV).
-- Request i comes from user (i % USERS) with that user's fixed region and device.
-- done() prints one JSON line (prefixed "WRK_JSON ") that loadtest/wrk.py parses.

local users, regions, devices = 100000, {}, {}
local counter = 0
local body = '{"text": "hello"}'

local function split(csv)
  local out = {}
  for item in string.gmatch(csv, "[^,]+") do
    out[#out + 1] = item
  end
  return out
end

function init(args)
  users = tonumber(args[1]) or users
  regions = split(args[2] or "us-east")
  devices = split(args[3] or "web-chrome")
end

function request()
  local n = counter % users
  counter = counter + 1
  local headers = {
    ["x-user-id"] = "user-" .. n,
    ["x-region"] = regions[(n % #regions) + 1],
    ["x-device-model"] = devices[(n % #devices) + 1],
    ["content-type"] = "application/json",
  }
  return wrk.format("POST", "/tts", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, '
      .. '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, '
      .. '"latency_p50_us": %d, "latency_p99_us": %d, "latency_p999_us": %d, '
      .. '"latency_max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.max))
end
