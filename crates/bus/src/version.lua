-- The version rule of crates/protocol/src/version.rs, for the scripts
-- (a test runs both on the same cases). A version is
-- "<last_modified_t>:<content hash>", the timestamp empty when unknown.
-- Returns 'newer', 'same' or 'older' for `new` against the stored `old`
-- (false or nil when there is none).
local function compare_versions(new, old)
  if not old then return 'newer' end
  local new_t, new_hash = string.match(new, '^(%-?%d*):(.*)$')
  local old_t, old_hash = string.match(old, '^(%-?%d*):(.*)$')
  if new_t == nil then new_t, new_hash = '', new end
  if old_t == nil then old_t, old_hash = '', old end
  if new_t ~= '' and old_t ~= '' then
    local a, b = tonumber(new_t), tonumber(old_t)
    if a > b then return 'newer' elseif a < b then return 'older' end
    return 'same'
  end
  if new_hash == old_hash then return 'same' end
  return 'newer'
end
