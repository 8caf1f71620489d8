-- wrk script for botify: sessions of the course's client, POST /next/<user> x7 then /last/<user>.
-- Usage: wrk -t1 -c4 -d5s -s scripts/wrk_post.lua --latency http://127.0.0.1:5001
-- Each session gets a fresh user id; tracks are drawn from 0..2999 (valid in every world).
local session_length = 8
local step = 0
local user = 0
local headers = {["Content-Type"] = "application/json"}

request = function()
    if step == 0 then
        user = math.random(0, 9999999)
    end
    step = step + 1
    local message = "next"
    local time = "1.0"
    if step > 1 then time = string.format("%.2f", math.random()) end
    if step == session_length then
        message = "last"
        step = 0
    end
    local body = string.format('{"track": %d, "time": %s}', math.random(0, 2999), time)
    return wrk.format("POST", "/" .. message .. "/" .. user, headers, body)
end

-- Report non-2xx answers, so a benchmark never counts errors as throughput.
done = function(summary, latency, requests)
    io.write(string.format("non-2xx: %d\n", summary.errors.status))
end
