# Starts Redis with lab8's ACL users (sh /etc/redis/redis-start.sh [ARGS…]).
# Their rules come from redis-users.acl, generated from lab8_protocol::acl
# and shipped in this ConfigMap, so a release that changes a grant rolls
# Redis; each one's password comes from the Secret lab8-redis-users (key =
# user name), mounted at /run/secrets/lab8-redis-users. Redis takes a single
# `user` line per user, hence one file composed here, readable by Redis
# alone, included after redis.conf (whose `requirepass` keeps the default
# user for the probes and operators).
set -eu
umask 077
users=/tmp/redis-users.conf
: >"$users"
while read -r user rules; do
  case $user in '' | '#'*) continue ;; esac
  password_file=/run/secrets/lab8-redis-users/$user
  [ -s "$password_file" ] || { echo "redis-start: no password for ACL user $user ($password_file)" >&2; exit 1; }
  printf 'user %s %s on >%s\n' "$user" "$rules" "$(cat "$password_file")" >>"$users"
done </etc/redis/redis-users.acl
exec redis-server /etc/redis/redis.conf --include "$users" "$@"
