# Redis under Sentinel in the lab8-redis StatefulSet, for overlays with the
# redis-sentinel component (k8s/components/redis-sentinel). In each pod, `sh redis-ha.sh redis` starts Redis as the primary
# or as a replica of it, and `sh redis-ha.sh sentinel` its Sentinel. Pods go
# by their stable names, <pod>.lab8-redis-headless (the headless Service
# publishes them before they are ready), which the Sentinels announce and
# the services connect to.
set -eu
MASTER=lab8
replicas=${REDIS_HA_REPLICAS:?REDIS_HA_REPLICAS: the number of pods in the set}
pod=${HOSTNAME:?HOSTNAME: the pod name}   # (the image has no hostname(1))
set_name=${pod%-*}
me=$pod.lab8-redis-headless
admin=$(cat /run/secrets/lab8-redis/password)
sentinel_password=$(cat /run/secrets/lab8-redis-users/sentinel)
umask 077

# named_primary: the primary the other pods' Sentinels name (this pod's own
# Sentinel starts with it and knows nothing yet); fails when none answers.
named_primary() {
  i=0
  while [ "$i" -lt "$replicas" ]; do
    peer=$set_name-$i.lab8-redis-headless
    if [ "$peer" != "$me" ]; then
      answer=$(REDISCLI_AUTH=$sentinel_password timeout 3 redis-cli -h "$peer" -p 26379 --raw \
        SENTINEL GET-MASTER-ADDR-BY-NAME "$MASTER" 2>/dev/null | head -n 1) || true
      case $answer in "$set_name"-*) echo "$answer"; return 0 ;; esac
    fi
    i=$((i + 1))
  done
  return 1
}

# No Sentinel answers: the set is starting (or all of it restarts); pod 0 leads.
primary=$(named_primary) || primary=$set_name-0.lab8-redis-headless

# The Sentinels still name this pod, which has just restarted. Its Redis
# starting as the primary now would race their failover (writes taken here
# would be dropped when they demote it), and its Sentinel would start from
# the old primary and name it to clients until it caught up. Give them the
# failover (down-after, then an election); stay primary only if none happens.
if [ "$primary" = "$me" ] && named_primary >/dev/null; then
  echo "redis-ha: the Sentinels name this restarted pod; waiting for their failover"
  for _ in $(seq 40); do
    sleep 1
    primary=$(named_primary) || primary=$me
    [ "$primary" = "$me" ] || break
  done
fi

case ${1:-} in
redis)
  # Settings with the admin password go in a file, never on the command line.
  {
    echo "replica-announce-ip $me"
    echo "masterauth $admin"
    # An isolated primary stops taking writes (the source's WAIT fails too).
    echo "min-replicas-to-write 1"
    echo "min-replicas-max-lag 10"
    [ "$primary" = "$me" ] || echo "replicaof $primary 6379"
  } >/tmp/redis-ha.conf
  echo "redis-ha: $me starts as $([ "$primary" = "$me" ] && echo primary || echo "replica of $primary")"
  exec sh /etc/redis/redis-start.sh --include /tmp/redis-ha.conf
  ;;
sentinel)
  # Sentinel resolves the primary's name once, at start: wait for its pod.
  # (The image has no getent: redis-cli says when a name does not resolve.)
  for _ in $(seq 60); do
    case $(timeout 3 redis-cli -h "$primary" -p 6379 ping 2>&1) in
      *"not known"* | *"name resolution"* | *"No address"*) sleep 1 ;;
      *) break ;;
    esac
  done
  mkdir -p /tmp/sentinel
  {
    echo "port 26379"
    echo "dir /tmp/sentinel"
    echo "requirepass $sentinel_password"
    echo "sentinel resolve-hostnames yes"
    echo "sentinel announce-hostnames yes"
    echo "sentinel announce-ip $me"
    echo "sentinel monitor $MASTER $primary 6379 2"
    echo "sentinel auth-pass $MASTER $admin"
    echo "sentinel down-after-milliseconds $MASTER 5000"
    echo "sentinel failover-timeout $MASTER 20000"
    echo "sentinel parallel-syncs $MASTER 1"
  } >/tmp/sentinel/sentinel.conf
  echo "redis-ha: Sentinel of $me, monitoring $primary"
  exec redis-server /tmp/sentinel/sentinel.conf --sentinel
  ;;
*)
  echo "usage: sh redis-ha.sh redis|sentinel" >&2
  exit 2
  ;;
esac
