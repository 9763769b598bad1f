-- wrk script: paced.lua's fixed request rate, but every request asks for a new object, for fill runs.
-- Usage: wrk -tT -cC ... -s distinct.lua URL -- PREFIX FIRST RATE_PER_THREAD T ACTIVE_MS
--
-- Thread t of T (from 1) asks for PREFIX..(FIRST + t - 1 + T * k), k = 0, 1, 2 ..., so no URL is asked
-- for twice in a run; a run that starts at FIRST + T * (the largest count) asks for none that this one
-- did. Pacing, percentiles and the "paced:" line are paced.lua's (loaded from beside this file).
-- No request is sent later than ACTIVE_MS after the start (give wrk's -d some seconds more): wrk drops
-- the requests still in flight when it stops, and a fill whose client left is a reserve write given
-- up, which is what a fill run counts. done() prints the rate over ACTIVE_MS, and what run.sh needs to
-- fetch the exact set again:
--   active: N requests in S s = R req/s
--   distinct: first=FIRST threads=T counts=c1,c2,...      (requests sent by each thread)

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "paced.lua")

local ffi = require("ffi")
local ts = ffi.new("bench_timespec") -- declared by paced.lua
local function now_ms()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) / 1e6
end

local paced_setup, paced_init, paced_delay, paced_done = setup, init, delay, done
local all_threads = {}
local stride, active_ms, started_ms

function setup(thread)
    paced_setup(thread)
    table.insert(all_threads, thread)
end

function init(args)
    paced_init({ args[1], "1", args[3] }) -- PREFIX COUNT RATE; COUNT is not used here
    first = tonumber(args[2])             -- globals: done() reads them with thread:get
    sent = 0
    stride = tonumber(args[4])
    active_ms = tonumber(args[5])
    active_s = active_ms / 1e3          -- global, for done()
    started_ms = now_ms()
end

local live = false

function request()
    local n = first + thread_no - 1 + stride * sent
    -- wrk calls request() once in the first thread before it starts, to check the script (every
    -- request it sends comes after a delay()): that call does not use up a URL.
    if live then
        sent = sent + 1
    end
    return wrk.format(nil, prefix .. n)
end

function delay()
    live = true
    local wait = paced_delay()
    -- A connection takes its slot when it is free, up to connections / rate ahead of it: judge the
    -- slot, not the moment it was taken.
    if now_ms() + wait - started_ms >= active_ms then
        return 3600 * 1000 -- past the active window: wait out the run
    end
    return wait
end

function done(summary, latency, requests)
    paced_done(summary, latency, requests)
    local counts, active_s = {}, all_threads[1]:get("active_s")
    for i, thread in ipairs(all_threads) do
        counts[i] = string.format("%d", thread:get("sent"))
    end
    io.write(string.format("active: %d requests in %.2f s = %.1f req/s\n",
        summary.requests, active_s, summary.requests / active_s))
    io.write(string.format("distinct: first=%d threads=%d counts=%s\n",
        all_threads[1]:get("first"), #all_threads, table.concat(counts, ",")))
end
