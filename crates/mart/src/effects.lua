-- The mart's effects, added to the bus's commit script (commit.lua) after
-- version.lua. Key names come in `context` (Keys::script_context): products,
-- assignments (the current model's), current, ignored, models, model_prefix.
--
-- Per model version V the mart keeps, under model_prefix .. V .. ':':
--   assignments      hash code -> Prediction JSON (until V is current; then
--                    it is context.assignments)
--   clusters         set of cluster ids with products
--   cluster:<id>     hash count, s0..s7 (sums), q0..q7 (sums of squares) of
--                    the products' fixed-point features
--   categories:<id>  sorted set tag -> products
--   members:<id>     sorted set code -> distance to the centroid
-- Each effect keeps the aggregates equal to a recomputation from the two
-- tables (`lab8-mart rebuild --check` proves it; members is not checked).
-- Integer arithmetic only, so adding and then removing a product leaves
-- exactly nothing.

local function model_key(version, part)
  return context.model_prefix .. version .. ':' .. part
end

local function assignments_of(version)
  if redis.call('GET', context.current) == version then return context.assignments end
  return model_key(version, 'assignments')
end

local function ignore(reason)
  redis.call('HINCRBY', context.ignored, reason, 1)
  return false
end

-- The search index member of a row: its name, ASCII-lower-cased, and code.
local function name_key(row, code)
  if type(row.name) ~= 'string' or row.name == '' then return nil end
  return string.lower(row.name) .. '\0' .. code
end

-- Adds (sign 1, with its distance) or removes (sign -1) a product row's
-- contribution to a cluster.
local function contribute(version, cluster, row, sign, code, distance)
  local aggregate = model_key(version, 'cluster:' .. cluster)
  local count = redis.call('HINCRBY', aggregate, 'count', sign)
  for i, value in ipairs(row.fixed) do
    redis.call('HINCRBY', aggregate, 's' .. (i - 1), string.format('%d', sign * value))
    redis.call('HINCRBY', aggregate, 'q' .. (i - 1), string.format('%d', sign * value * value))
  end
  local categories = model_key(version, 'categories:' .. cluster)
  for _, tag in ipairs(row.tags) do
    if tonumber(redis.call('ZINCRBY', categories, sign, tag)) <= 0 then
      redis.call('ZREM', categories, tag)
    end
  end
  if sign > 0 then
    redis.call('ZADD', model_key(version, 'members:' .. cluster), distance, code)
  else
    redis.call('ZREM', model_key(version, 'members:' .. cluster), code)
  end
  if count <= 0 then
    redis.call('DEL', aggregate)
    redis.call('SREM', model_key(version, 'clusters'), cluster)
  else
    redis.call('SADD', model_key(version, 'clusters'), cluster)
  end
end

-- A product row, new or newer: replaces the stored one; the old row leaves
-- every model's assignments and aggregates (its new features go to the
-- model, and its prediction puts it back). Same version: ignored as
-- `unchanged`; older: ignored as `stale`.
effects.upsert = function(code, value)
  local row = cjson.decode(value)
  local stored = redis.call('HGET', context.products, code)
  local old = false
  if stored then old = cjson.decode(stored) end
  local order = compare_versions(row.version, old and old.version)
  if order == 'same' then return ignore('unchanged') end
  if order == 'older' then return ignore('stale') end
  if old then
    redis.call('INCR', context.replaced)
    for _, version in ipairs(redis.call('ZRANGE', context.models, 0, -1)) do
      local assignments = assignments_of(version)
      local assigned = redis.call('HGET', assignments, code)
      if assigned then
        contribute(version, cjson.decode(assigned).cluster, old, -1, code)
        redis.call('HDEL', assignments, code)
      end
    end
    local old_name = name_key(old, code)
    if old_name then redis.call('ZREM', context.names, old_name) end
  end
  redis.call('HSET', context.products, code, value)
  local new_name = name_key(row, code)
  if new_name then redis.call('ZADD', context.names, 0, new_name) end
  redis.call('HDEL', context.rejected, code)
end

-- A prediction: the product's assignment under the prediction's model, its
-- contribution moved from the old cluster to the new. Ignored when it
-- scored content since replaced (`stale_prediction`), when its model is
-- unknown or older than the current one (`retired_model`), or when the
-- product is not in the table (`unknown_product`).
effects.assign = function(code, value)
  local prediction = cjson.decode(value)
  local stored = redis.call('HGET', context.products, code)
  if not stored then return ignore('unknown_product') end
  local row = cjson.decode(stored)
  if row.version ~= prediction.product_version then return ignore('stale_prediction') end
  local version = prediction.model_version
  local score = redis.call('ZSCORE', context.models, version)
  if not score then return ignore('retired_model') end
  local current = redis.call('GET', context.current)
  if not current and redis.call('ZRANGE', context.models, -1, -1)[1] == version then
    -- The first model becomes current with its first prediction: there is no
    -- view to keep readable, and its assignments go straight to the mart's table.
    redis.call('SET', context.current, version)
    current = version
  end
  if current and current ~= version then
    local current_score = redis.call('ZSCORE', context.models, current)
    if current_score and tonumber(score) < tonumber(current_score) then return ignore('retired_model') end
  end
  local assignments = assignments_of(version)
  local assigned = redis.call('HGET', assignments, code)
  if assigned then
    local old_cluster = cjson.decode(assigned).cluster
    if old_cluster ~= prediction.cluster then
      contribute(version, old_cluster, row, -1, code)
      contribute(version, prediction.cluster, row, 1, code, prediction.distance)
    else
      redis.call('ZADD', model_key(version, 'members:' .. old_cluster), prediction.distance, code)
    end
  else
    contribute(version, prediction.cluster, row, 1, code, prediction.distance)
  end
  redis.call('HSET', assignments, code, value)
end
