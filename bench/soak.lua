-- Soak load: rotates over three programs; prints one JSON summary line at the end.
local paths = { "/hello/", "/output/", "/echo/soak" }
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout
  io.write(string.format('JSON {"requests":%d,"errors":%d,"non2xx":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, errors, summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
