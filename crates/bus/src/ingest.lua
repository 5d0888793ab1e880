-- Adds each product that is new, or newer than the version last sent for its
-- code (compare_versions, prepended from version.lua), to the raw stream and
-- records its version, atomically: loading the same records twice adds
-- nothing, loading a newer export sends what changed.
-- KEYS: 1 seen hash (code -> version), 2 raw stream.
-- ARGV: payload field, then code, version, payload, code, version, payload, ...
-- Returns {sent, unchanged (same version), stale (older version)}.
local field = ARGV[1]
local sent, unchanged, stale = 0, 0, 0
for i = 2, #ARGV, 3 do
  local code, version = ARGV[i], ARGV[i + 1]
  local order = compare_versions(version, redis.call('HGET', KEYS[1], code))
  if order == 'newer' then
    redis.call('HSET', KEYS[1], code, version)
    redis.call('XADD', KEYS[2], '*', field, ARGV[i + 2])
    sent = sent + 1
  elseif order == 'same' then
    unchanged = unchanged + 1
  else
    stale = stale + 1
  end
end
return {sent, unchanged, stale}
