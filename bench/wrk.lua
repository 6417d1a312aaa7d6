-- wrk script for every row of the benchmark.
--
-- Always: done() prints one line `BENCH_JSON {...}` with the exact counts and latency
-- percentiles (microseconds), which orchestrate.mjs reads instead of parsing wrk's text.
--
-- With BENCH_TOKENS=<file> (the cold-verification rows): every request carries a different
-- bearer token. The file holds one token per line, all of one length. BENCH_TOKEN_START is
-- the first line this run may use (0-based) and BENCH_TOKEN_COUNT how many lines each wrk
-- thread gets: thread k uses lines [START + k*COUNT, START + (k+1)*COUNT), so no token is
-- sent twice. A thread that runs out starts over from its first token and counts every
-- repeated request (the row then fails: a repeated token may come from portcullis'
-- verified-token cache).
--
-- With BENCH_DPOP_TOKEN=<token> as well (the DPoP row): the file's lines are DPoP proofs, one
-- per request, sent with `Authorization: DPoP <token>` (bench/mint-dpop.mjs makes both).
--
-- Without BENCH_TOKENS no request() function is defined, so wrk keeps its static,
-- pre-built request (headers from -H) and the client costs as little as possible.

local token_file = os.getenv("BENCH_TOKENS")
local dpop_token = os.getenv("BENCH_DPOP_TOKEN")

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

if token_file then
  local tokens = {}
  local n = 0
  local i = 0
  local wrapped = false
  path_ = os.getenv("BENCH_PATH") or "/"
  repeats = 0

  function init(args)
    local start = tonumber(os.getenv("BENCH_TOKEN_START")) or 0
    local count = tonumber(os.getenv("BENCH_TOKEN_COUNT")) or 0
    local f = assert(io.open(token_file, "r"))
    -- All lines have the same length (bench/mint.mjs makes sure), so seek to this slice.
    local width = #f:read("*l") + 1
    f:seek("set", (start + id * count) * width)
    for _ = 1, count do
      local line = f:read("*l")
      if not line then break end
      n = n + 1
      tokens[n] = dpop_token and line or ("Bearer " .. line)
    end
    f:close()
    if n < count then
      error("thread " .. id .. " wanted " .. count .. " tokens from " .. token_file .. ", got " .. n)
    end
  end

  function request()
    i = i + 1
    if i > n then
      i = 1
      wrapped = true
    end
    if wrapped then
      repeats = repeats + 1
    end
    if dpop_token then
      return wrk.format("GET", path_, { ["Authorization"] = "DPoP " .. dpop_token, ["DPoP"] = tokens[i] })
    end
    return wrk.format("GET", path_, { ["Authorization"] = tokens[i] })
  end
end

function done(summary, latency, requests)
  local repeated = 0
  for _, t in ipairs(threads) do
    repeated = repeated + (tonumber(t:get("repeats")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"repeats":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99), repeated))
end
