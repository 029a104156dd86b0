-- wrk script of `cargo xtask bench` (xtask/src/bench/wrk.rs reads what it prints).
--
-- It prints wrk's results as one line `BENCH_JSON {...}` (latencies in microseconds), so the
-- benchmark reads exact numbers instead of wrk's rounded text. Set by environment variables:
--   BENCH_DELAY_MS  each connection waits this long between requests (a fixed, moderate rate);
--   BENCH_BODY      every request is a POST with this body;
--   BENCH_BODIES    a file of POST bodies, one per line, each sent once in order (token requests
--                   with single-use client assertions); run wrk with one thread then.

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if delay_ms then
  function delay()
    return delay_ms
  end
end

local body = os.getenv("BENCH_BODY")
if body then
  wrk.method = "POST"
  wrk.body = body
end

local bodies_path = os.getenv("BENCH_BODIES")
if bodies_path then
  local bodies = {}
  for line in io.lines(bodies_path) do
    bodies[#bodies + 1] = line
  end
  local next_body = 0
  function request()
    next_body = next_body + 1
    -- Once the bodies are used up, an empty body is sent: the server refuses it and wrk counts
    -- a non-2xx answer, so running out can never pass for success.
    return wrk.format("POST", nil, nil, bodies[next_body] or "")
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
