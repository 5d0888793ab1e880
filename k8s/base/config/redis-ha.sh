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
# Sentinel starts with it and knows nothing yet). Status 1: some other pod
# exists but no Sentinel answered (yet); 2: no other pod's name resolves.
named_primary() {
  i=0
  status=2
  while [ "$i" -lt "$replicas" ]; do
    peer=$set_name-$i.lab8-redis-headless
    if [ "$peer" != "$me" ]; then
      answer=$(REDISCLI_AUTH=$sentinel_password timeout 3 redis-cli -h "$peer" -p 26379 --raw \
        SENTINEL GET-MASTER-ADDR-BY-NAME "$MASTER" 2>&1 | head -n 1) || true
      case $answer in
        "$set_name"-*) echo "$answer"; return 0 ;;
        # NXDOMAIN: no such pod. (A temporary DNS failure is not that.)
        *"not known"* | *"No address"*) ;;
        *) status=1 ;;
      esac
    fi
    i=$((i + 1))
  done
  return $status
}

# A new pod may not reach its peers for its first seconds (DNS, the network
# policy's rules for its address), so keep asking; taking pod 0 for the
# primary while the set runs would chain this pod behind a replica. Only
# when no other pod exists is the set starting: pod 0 leads. (The Pods are
# OrderedReady: pod 0 starts alone.)
status=0
for attempt in $(seq 30); do
  status=0
  primary=$(named_primary) || status=$?
  [ "$status" -eq 1 ] || break
  sleep 1
done
case $status in
  0) echo "redis-ha: the Sentinels name $primary (ask $attempt)" ;;
  2) primary=$set_name-0.lab8-redis-headless; echo "redis-ha: no other pod of the set exists; $primary leads" ;;
  *) primary=$set_name-0.lab8-redis-headless; echo "redis-ha: no Sentinel answered in 30 tries; $primary leads" ;;
esac

# The Sentinels still name this pod, which has just restarted. Its Redis
# starting as the primary now would race their failover (writes taken here
# would be dropped when they demote it), and its Sentinel would start from
# the old primary and name it to clients until it caught up. Give them the
# failover (down-after, then an election). Two Sentinels left can split
# their vote; each retries after twice failover-timeout (20 s), so wait
# through several elections (an early return as primary would also make the
# replicas resync from this pod's older data); stay primary only if none wins.
if [ "$primary" = "$me" ] && [ "$status" -eq 0 ]; then
  echo "redis-ha: the Sentinels name this restarted pod; waiting for their failover"
  for _ in $(seq 120); do
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
    # An election not won in failover-timeout is abandoned and retried after
    # twice that: 10 s keeps a split vote's cost near 20 s.
    echo "sentinel failover-timeout $MASTER 10000"
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
