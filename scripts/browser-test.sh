#!/usr/bin/env bash
# The mart's web page in a real headless browser (Debian's chromium): a
# private Redis with the bundled sample loaded and scored by the committed
# model, the long-running mart serving the page; then
#   - the page loads with no console error,
#   - it shows k cluster cards whose sizes add up to the mart's products,
#   - a search for a known product (/?q=<name>) shows that product's cluster,
# and screenshots at 1280×800, at phone width and of the whole page with its
# map (artifacts/browser/).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LAB8_ROOT"

command -v chromium >/dev/null || apt_install chromium
ensure_redis
build
OUT=${OUT:-$LAB8_ROOT/artifacts/browser}; rm -rf "$OUT"; mkdir -p "$OUT"
RUN=$(mktemp -d "${TMPDIR:-/tmp}/lab8-browser.XXXXXX")
MART_PID=""
cleanup() { [ -n "$MART_PID" ] && kill "$MART_PID" 2>/dev/null && wait "$MART_PID" 2>/dev/null; stop_redis; rm -rf "$RUN"; }
trap cleanup EXIT
start_redis "$RUN/redis"
export REDIS_URL RUST_LOG=warn
rc() { redis-cli -p "$REDIS_PORT" --raw "$@"; }

"$LAB8_BIN/lab8-source" load --quiet --category-from-file-name data/openfoodfacts/*.tsv >/dev/null
"$LAB8_BIN/lab8-mart" --once --consumer-name browser >/dev/null
"$LAB8_BIN/lab8-model" unpack "$LAB8_ARTIFACT" "$RUN/model" >/dev/null
MODEL_DIR=$RUN/model "$LAB8_BIN/lab8-model" serve --once --consumer-name browser >/dev/null
port=$(free_port)
LISTEN_ADDR=127.0.0.1:$port "$LAB8_BIN/lab8-mart" --consumer-name browser & MART_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do [ "$(rc HLEN "$LAB8_MART_CLUSTERS")" -gt 0 ] && break; sleep 0.1; done

browse() { # browse URL NAME [WIDTH,HEIGHT]: the DOM after the scripts ran, the console, a screenshot
  local url=$1 name=$2 size=${3:-1280,800}
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$size" \
    --enable-logging=stderr --v=0 --virtual-time-budget=8000 --dump-dom "$url" \
    >"$OUT/$name.html" 2>"$OUT/$name.console.txt"
  (cd "$OUT" && chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$size" \
    --virtual-time-budget=8000 --screenshot="$OUT/$name.png" "$url" >/dev/null 2>&1)
}
passed=0; failed=0
check() { if "${@:2}"; then passed=$((passed + 1)); echo "ok   - $1"; else failed=$((failed + 1)); echo "FAIL - $1"; fi; }
no_console_errors() { ! grep -E 'CONSOLE.*(Uncaught|Error|Failed)|Failed to load resource' "$OUT/$1.console.txt"; }

browse "http://127.0.0.1:$port/" page
browse "http://127.0.0.1:$port/" page-phone 390,844
browse "http://127.0.0.1:$port/" page-full 1280,1700
k=$(rc HLEN "$LAB8_MART_CLUSTERS"); products=$(rc HLEN "$LAB8_MART_PRODUCTS")
cards=$(grep -o '<article class="card"' "$OUT/page.html" | wc -l)
sizes=$(grep -o 'data-size="[0-9]*"' "$OUT/page.html" | tr -dc '0-9\n' | awk '{ s += $1 } END { print s + 0 }')
check "the page loads with no console error" no_console_errors page
check "it shows the model's $k cluster cards ($cards)" test "$cards" -eq "$k"
check "the card sizes add up to the mart's $products products ($sizes)" test "$sizes" -eq "$products"
check "it draws the map: 60 sampled products per cluster" test "$(grep -o '<circle' "$OUT/page.html" | wc -l)" -eq $((60 * k))
check "it lists rejected records by reason" grep -q 'missing_required:energy_kj' "$OUT/page.html"
check "it is readable at phone width too (same cards)" test "$(grep -o '<article class="card"' "$OUT/page-phone.html" | wc -l)" -eq "$k"

# A known product: among the members of cluster 0 nearest its centre, the
# first with a plain name (no HTML escaping in the comparison), found by name.
members=$(rc ZRANGE "$LAB8_MART_MODEL_PREFIX$(rc GET "$LAB8_MART_CURRENT_MODEL"):members:0" 0 49)
read -r code name < <(for c in $members; do printf '%s\t%s\n' "$c" "$(rc HGET "$LAB8_MART_PRODUCTS" "$c")"; done | python3 -c '
import json, re, sys
for line in sys.stdin:
    code, row = line.rstrip("\n").split("\t", 1)
    name = json.loads(row).get("name") or ""
    if re.fullmatch(r"[A-Za-z0-9 ]{4,}", name):
        print(code, name); break')
cluster=$(rc HGET "$LAB8_MART_ASSIGNMENTS" "$code" | python3 -c 'import json, sys; print(json.load(sys.stdin)["cluster"])')
query=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$name")
browse "http://127.0.0.1:$port/?q=$query" search
check "searching \"$name\" lists it with its cluster ($cluster)" grep -qF "$name — cluster $cluster<" "$OUT/search.html"
check "and shows a product's cluster and its features against the cluster mean" \
  grep -q 'id="product-cluster">Cluster [0-9]*, distance' "$OUT/search.html"
check "the search result page has no console error" no_console_errors search
echo "$passed passed, $failed failed (screenshots in $OUT)"
[ "$failed" -eq 0 ]
