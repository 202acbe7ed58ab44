-- wrk script: replay pre-built (pre-signed) HTTP requests, each one once.
--
--   wrk -t2 -c64 -d12s -s bench/replay.lua http://127.0.0.1:PORT -- /tmp/dir/reqs
--
-- bench/run.py writes one file per wrk thread, "<prefix>.<thread index>", each a sequence
-- of records "<byte length>\n<raw HTTP/1.1 request>". Thread i sends the requests of its
-- file in order, so every request of a run is distinct (chatgate dedupes on webhook-id). If
-- a thread runs out it starts over and counts the wrap; run.py reports that (duplicates
-- are answered 200 but not stored again).
--
-- done() prints one line "BENCH_JSON {...}" with wrk's totals for run.py to parse.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local path = args[1] .. "." .. tid
   local f = assert(io.open(path, "rb"))
   local data = f:read("*a")
   f:close()
   reqs = {}
   local pos, n = 1, 0
   local size = #data
   while pos <= size do
      local nl = string.find(data, "\n", pos, true)
      local len = tonumber(string.sub(data, pos, nl - 1))
      n = n + 1
      reqs[n] = string.sub(data, nl + 1, nl + len)
      pos = nl + 1 + len
   end
   data = nil
   total = n
   idx = 0
   wraps = 0
end

function request()
   idx = idx + 1
   if idx > total then
      idx = 1
      wraps = wraps + 1
   end
   return reqs[idx]
end

function done(summary, latency, requests)
   local issued, wrapped = 0, 0
   for _, t in ipairs(threads) do
      issued = issued + t:get("wraps") * t:get("total") + t:get("idx")
      wrapped = wrapped + t:get("wraps")
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
      '"write_errors":%d,"non_2xx":%d,"timeouts":%d,"issued":%d,"wraps":%d,' ..
      '"lat_p50_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, issued, wrapped, latency:percentile(50), latency:percentile(99), latency.max))
end
