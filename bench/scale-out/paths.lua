-- wrk script: every request asks for a random path from a file (one path, with its query, a line).
-- Usage: wrk ... -s paths.lua URL -- FILE

local threads = 0

function setup(thread)
    threads = threads + 1
    thread:set("thread_no", threads)
end

function init(args)
    paths = {}
    for line in io.lines(args[1]) do
        paths[#paths + 1] = line
    end
    math.randomseed(os.time() * 1000 + thread_no)
end

function request()
    return wrk.format(nil, paths[math.random(1, #paths)])
end
