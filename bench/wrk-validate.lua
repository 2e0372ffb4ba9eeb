-- wrk -s bench/wrk-validate.lua: POST validate with the agent key from $TETHER_BENCH_KEY.
wrk.method = "POST"
wrk.body = '{"deviceId": "bench-surface"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-org-key"] = os.getenv("TETHER_BENCH_KEY")
