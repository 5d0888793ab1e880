-- wrk script: POST one product's nutrients (bench/predict.json, the body
-- bench_rate sends too) to /predict. Run from the repository root.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- The bearer token the service requires (bench.sh exports API_TOKEN).
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_TOKEN")
local body = assert(io.open("bench/predict.json", "r"))
wrk.body = body:read("*a")
body:close()
