-- Moves the mart to the newest model (highest score in the models set) once
-- it has assigned at least as many products as the current one (at once
-- when there is none), and retires every older model: its assignments and
-- aggregates are unlinked and it leaves the models set, so that no view
-- ever mixes two models. The new model's assignment table takes the
-- current table's name.
-- ARGV: 1 context (Keys::script_context).
-- Returns {current model or '', state, target's assignments, needed}, the
-- state one of 'none' (no model yet), 'current', 'backfilling', 'switched'.
local context = cjson.decode(ARGV[1])
local function model_key(version, part)
  return context.model_prefix .. version .. ':' .. part
end
local newest = redis.call('ZRANGE', context.models, -1, -1, 'WITHSCORES')
local current = redis.call('GET', context.current)
if #newest == 0 then return {current or '', 'none', 0, 0} end
local target, target_score = newest[1], tonumber(newest[2])
local function retire_all_but(keep)
  for _, version in ipairs(redis.call('ZRANGE', context.models, 0, -1)) do
    if version ~= keep then
      for _, cluster in ipairs(redis.call('SMEMBERS', model_key(version, 'clusters'))) do
        redis.call('UNLINK', model_key(version, 'cluster:' .. cluster), model_key(version, 'categories:' .. cluster),
          model_key(version, 'members:' .. cluster))
      end
      redis.call('UNLINK', model_key(version, 'clusters'), model_key(version, 'assignments'))
      redis.call('ZREM', context.models, version)
    end
  end
end
if current == target then
  -- Older models announced before the first one became current go too.
  retire_all_but(target)
  local n = redis.call('HLEN', context.assignments)
  return {current, 'current', n, n}
end
local done = redis.call('HLEN', model_key(target, 'assignments'))
local needed = 0
if current then needed = redis.call('HLEN', context.assignments) end
if done < needed then return {current, 'backfilling', done, needed} end
retire_all_but(target)
redis.call('UNLINK', context.assignments)
if redis.call('EXISTS', model_key(target, 'assignments')) == 1 then
  redis.call('RENAME', model_key(target, 'assignments'), context.assignments)
end
redis.call('SET', context.current, target)
return {target, 'switched', done, needed}
