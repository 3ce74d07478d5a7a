-- wrk script for bench/egress/run.sh.
--
-- wrk has no proxy support, so this script sends the request line that a forward proxy
-- expects: `wrk ... -s proxy.lua http://PROXY/ -- TARGET HOST` makes every request
-- `GET TARGET HTTP/1.1` with `Host: HOST`, written to the proxy's address. TARGET is the
-- absolute-form URL (through a proxy) or the origin-form path (direct). At the end it
-- prints one machine-readable line that run.sh parses:
--   RESULT rps=<req/s> p50_us=<µs> p99_us=<µs> requests=<n> non2xx=<n> errors=<n>

local target, host

function init(args)
   target = args[1] or "/"
   host = args[2]
   wrk.method = "GET"
   wrk.path = target
   if host then
      wrk.headers["Host"] = host
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   local errors = e.connect + e.read + e.write + e.timeout
   local seconds = summary.duration / 1e6
   io.write(string.format(
      "RESULT rps=%.1f p50_us=%d p99_us=%d requests=%d non2xx=%d errors=%d\n",
      summary.requests / seconds, latency:percentile(50), latency:percentile(99),
      summary.requests, e.status, errors))
end
