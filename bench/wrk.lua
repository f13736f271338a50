-- Prints one JSON line with the run's figures (latency in microseconds).
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    'JSON {"requests":%d,"duration_us":%d,"errors":%d,"mean_us":%.1f,"p50_us":%d,"p99_us":%d,"rps":%.1f}\n',
    summary.requests, summary.duration, errors, latency.mean, latency:percentile(50), latency:percentile(99),
    summary.requests / (summary.duration / 1e6)))
end
