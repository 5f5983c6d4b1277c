-- wrk script for the Ghost Engine benchmark (bench/wrkload.py runs it).
-- The request comes from the environment: BENCH_METHOD (default GET) and BENCH_BODY (a JSON
-- body, sent as application/json, for POST). At the end one line, prefixed BENCH_RESULT,
-- carries the counts and the latency percentiles as JSON, so the harness need not parse
-- wrk's human-readable summary.

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
if body ~= nil and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"status":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
