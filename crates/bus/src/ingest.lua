-- Adds each product whose code is new to the seen-set and the raw stream,
-- atomically, so that loading the same records twice adds nothing.
-- KEYS: 1 seen set, 2 raw stream. ARGV: payload field, then code, payload, code, payload, ...
local field = ARGV[1]
local sent = 0
for i = 2, #ARGV, 2 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], '*', field, ARGV[i + 1])
    sent = sent + 1
  end
end
return sent
