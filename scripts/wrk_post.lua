wrk.method = "POST"
wrk.body   = '{"track": 10, "time": 0.3}'
wrk.headers["Content-Type"] = "application/json"
