-- wrk script: POST one product's nutrients to /predict.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- The bearer token the service requires (bench.sh exports API_TOKEN).
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_TOKEN")
wrk.body = '{"energy_kj":2100,"fat_g":25,"saturated_fat_g":12,"carbohydrates_g":60,"sugars_g":30,"fiber_g":2,"proteins_g":6,"salt_g":0.6}'
