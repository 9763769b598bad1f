-- wrk script: a fixed request rate, for latency percentiles (Debian has no wrk2).
-- Usage: wrk -tT -cC ... -s paced.lua URL -- PREFIX COUNT RATE_PER_THREAD
--
-- Each thread keeps a schedule of RATE_PER_THREAD requests per second, shared by its connections:
-- delay() gives the next free slot to whichever connection asks, so the rate holds as long as a
-- connection is free when its slot comes (latency < connections / rate). A slot already past is sent
-- at once. wrk times a request from when it is sent, so unlike wrk2 a stall is not charged to the
-- requests queued behind it; the achieved rate is printed so a run that fell behind shows.
-- Objects are picked at random as in random.lua. done() prints latency percentiles in microseconds.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")

local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) / 1e6
end

local threads = 0

function setup(thread)
    threads = threads + 1
    thread:set("thread_no", threads)
end

local interval_ms, next_ms

function init(args)
    prefix = args[1]
    count = tonumber(args[2])
    interval_ms = 1000 / tonumber(args[3])
    math.randomseed(os.time() * 1000 + thread_no)
end

function request()
    return wrk.format(nil, prefix .. math.random(0, count - 1))
end

function delay()
    local now = now_ms()
    next_ms = math.max(next_ms or now, now - 1000) + interval_ms -- a stall is caught up for at most 1 s
    -- wrk takes whole milliseconds; rounding keeps each send within 0.5 ms of its slot.
    return math.max(0, math.floor(next_ms - now + 0.5))
end

function done(summary, latency, requests)
    local secs = summary.duration / 1e6
    io.write(string.format("paced: %d requests in %.2f s = %.1f req/s, %d non-2xx/3xx\n",
        summary.requests, secs, summary.requests / secs, summary.errors.status))
    io.write(string.format("latency_us p50=%.0f p90=%.0f p99=%.0f p99.9=%.0f max=%.0f\n",
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max))
end
