-- Acknowledges stream entries and applies each one's effects only when its
-- XACK acknowledged it, atomically: an entry delivered twice (a crash before
-- the commit returned, XAUTOCLAIM by another replica) takes effect once.
-- A stage may add effects of its own (commit.rs: CommitScript::with_effects);
-- their Lua is placed at the STAGE EFFECTS marker below.
--
-- KEYS: 1 source stream, 2 dead-letter stream, 3 rejection counts (hash
--       reason -> count), then the output stream if ARGV[4] == '1', then the
--       table (hash code -> value) if ARGV[5] == '1'.
-- ARGV: 1 group, 2 stage (written in dead letters), 3 the reason written
--       when an `insert` finds its code taken, 4 has output, 5 has table,
--       6 the payload field of output entries, 7 the stage's context (JSON,
--       for stage effects), then per entry: id, code, number of effects, and
--       each effect as a kind and one value, or 'reject', reason, payload:
--         'insert', value  -- HSETNX code -> value; when the code is taken the
--                          -- entry becomes a dead letter and its later
--                          -- effects are skipped
--         'replace', value -- HSET code -> value
--         'output', value  -- XADD to the output stream
--         'reject', reason, payload -- a dead letter, counted by reason
-- An effect returns nil to go on, false to skip the entry's later effects
-- (ignored), or a reason to make the entry a dead letter (and skip the rest).
-- Returns {entries acknowledged by this call, entries stopped with a dead
-- letter by an effect, entries stopped as ignored}.
local group, stage, taken_reason, payload_field = ARGV[1], ARGV[2], ARGV[3], ARGV[6]
local source, dead_letters, rejections = KEYS[1], KEYS[2], KEYS[3]
local next_key = 4
local output, table_key
if ARGV[4] == '1' then output = KEYS[next_key]; next_key = next_key + 1 end
if ARGV[5] == '1' then table_key = KEYS[next_key] end
local context = {}
if ARGV[7] ~= '' then context = cjson.decode(ARGV[7]) end

local function reject(id, code, reason, payload)
  redis.call('XADD', dead_letters, '*', 'stage', stage, 'reason', reason, 'code', code, 'entry', id, 'payload', payload)
  redis.call('HINCRBY', rejections, reason, 1)
  -- A stage may index its rejections by code (context.rejected, a hash).
  if context.rejected and code ~= '' then redis.call('HSET', context.rejected, code, reason) end
end

local effects = {}
effects.insert = function(code, value)
  if redis.call('HSETNX', table_key, code, value) == 0 then return taken_reason end
end
effects.replace = function(code, value)
  redis.call('HSET', table_key, code, value)
end
effects.output = function(code, value)
  redis.call('XADD', output, '*', payload_field, value)
end

-- STAGE EFFECTS

local applied, stopped, ignored = 0, 0, 0
local i = 8
while i <= #ARGV do
  local id, code, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  local live = redis.call('XACK', source, group, id) == 1
  if live then applied = applied + 1 end
  for _ = 1, count do
    local kind = ARGV[i]
    if kind == 'reject' then
      if live then reject(id, code, ARGV[i + 1], ARGV[i + 2]) end
      i = i + 3
    else
      local value = ARGV[i + 1]
      i = i + 2
      if live then
        local effect = effects[kind]
        if effect == nil then return redis.error_reply('commit.lua: unknown effect ' .. kind) end
        local outcome = effect(code, value)
        if outcome == false then
          ignored = ignored + 1
          live = false
        elseif outcome ~= nil then
          stopped = stopped + 1
          reject(id, code, outcome, value)
          live = false
        end
      end
    end
  end
end
return {applied, stopped, ignored}
