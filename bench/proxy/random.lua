-- wrk script: every request asks for a random object PREFIX..N, N uniform in [0, COUNT).
-- Usage: wrk ... -s random.lua URL -- PREFIX COUNT
-- Headers given with -H (Host: bench.test) go on every request.

local threads = 0

function setup(thread)
    -- Runs in wrk's main Lua state, once per thread: give each thread its own seed.
    threads = threads + 1
    thread:set("thread_no", threads)
end

function init(args)
    prefix = args[1]
    count = tonumber(args[2])
    math.randomseed(os.time() * 1000 + thread_no)
end

function request()
    return wrk.format(nil, prefix .. math.random(0, count - 1))
end
