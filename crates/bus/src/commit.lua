-- Acknowledges stream entries and applies each one's effects only when its
-- XACK acknowledged it, atomically: an entry delivered twice (a crash before
-- the commit returned, XAUTOCLAIM by another replica) takes effect once.
--
-- KEYS: 1 source stream, 2 dead-letter stream, 3 rejection counts (hash
--       reason -> count), then the output stream if ARGV[4] == '1', then the
--       table (hash code -> value) if ARGV[5] == '1'.
-- ARGV: 1 group, 2 stage (written in dead letters), 3 the reason written
--       when an `insert` finds its code taken, 4 has output, 5 has table,
--       6 the payload field of output entries, then per entry: id, code, number of effects, and each effect as
--         'insert', value  -- HSETNX code -> value; when the code is taken the
--                          -- entry becomes a dead letter and its later
--                          -- effects are skipped
--         'replace', value -- HSET code -> value
--         'output', value  -- XADD to the output stream
--         'reject', reason, payload -- a dead letter, counted by reason
-- Returns {entries acknowledged by this call, inserts refused as taken}.
local group, stage, taken_reason, payload_field = ARGV[1], ARGV[2], ARGV[3], ARGV[6]
local source, dead_letters, rejections = KEYS[1], KEYS[2], KEYS[3]
local next_key = 4
local output, table_key
if ARGV[4] == '1' then output = KEYS[next_key]; next_key = next_key + 1 end
if ARGV[5] == '1' then table_key = KEYS[next_key] end

local function reject(id, code, reason, payload)
  redis.call('XADD', dead_letters, '*', 'stage', stage, 'reason', reason, 'code', code, 'entry', id, 'payload', payload)
  redis.call('HINCRBY', rejections, reason, 1)
end

local applied, taken = 0, 0
local i = 7
while i <= #ARGV do
  local id, code, effects = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  local live = redis.call('XACK', source, group, id) == 1
  if live then applied = applied + 1 end
  for _ = 1, effects do
    local kind = ARGV[i]
    if kind == 'reject' then
      if live then reject(id, code, ARGV[i + 1], ARGV[i + 2]) end
      i = i + 3
    else
      local value = ARGV[i + 1]
      i = i + 2
      if live then
        if kind == 'insert' then
          if redis.call('HSETNX', table_key, code, value) == 0 then
            taken = taken + 1
            reject(id, code, taken_reason, value)
            live = false
          end
        elseif kind == 'replace' then
          redis.call('HSET', table_key, code, value)
        elseif kind == 'output' then
          redis.call('XADD', output, '*', payload_field, value)
        else
          return redis.error_reply('commit.lua: unknown effect ' .. kind)
        end
      end
    end
  end
end
return {applied, taken}
