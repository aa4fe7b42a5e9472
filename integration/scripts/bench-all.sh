#!/usr/bin/env bash
# Every benchmark figure in one run, on loopback: first `compare.sh` (the bus and Zenoh side by
# side), then the scenarios Zenoh's harness has no counterpart for, each pair interleaved so that
# drift on a shared machine hits both sides alike. Prints every result line, then one line per
# ratio:
#   extra scenario=<name> a=<x> b=<y> ratio=<a/b> (<metric>)
#
# Usage: integration/scripts/bench-all.sh [ROUNDS]
#   PEER_BENCH  a writable copy of shared/peer-bench (compare.sh builds Zenoh's harness in it);
#               default ../shared/peer-bench beside the checkout
#   SECS        seconds per throughput run (default 3)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
peer_bench=${PEER_BENCH:-$root/../shared/peer-bench}
rounds=${1:-3}
secs=${SECS:-3}

SECS=$secs bash "$peer_bench/compare.sh" "$root" "$rounds"
bus="$root/target/release/bus-bench"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() { # tag, then bus-bench arguments; tags the result line so pairs can be told apart
  local tag=$1
  shift
  "$bus" "$@" 2>/dev/null | grep '^peer=' | sed "s/^/tag=$tag /" | tee -a "$out" || true
}
for ((r = 0; r < rounds; r++)); do
  run raw_udp udp-lat --size 64 --count 5000
  run bus_lat lat --size 64 --count 5000
  run bus_lat_busy lat --size 64 --count 5000 --busy-poll-us 300
  run plain thr --size 64 --secs "$secs" --reliability reliable
  run batch64 thr --size 64 --secs "$secs" --reliability reliable --batch 64
  run encrypted thr --size 64 --secs "$secs" --reliability reliable --encrypted
  run lossless thr --size 64 --secs "$secs" --reliability reliable
  run loss10 thr --size 64 --secs "$secs" --reliability reliable --loss 0.1
  run fanout_be thr --size 64 --secs "$secs" --subscribers 3
  run fanout_rel thr --size 64 --secs "$secs" --reliability reliable --subscribers 3
done
"$bus" mem --count 20000 | tee -a "$out"

python3 - "$out" <<'PY'
import statistics, sys
rows = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in open(sys.argv[1])]
def med(tag, key):
    v = [float(r[key]) for r in rows if r.get("tag") == tag and key in r]
    return statistics.median(v) if v else None
for name, a, b, key in [
    ("lat_vs_raw_udp", "bus_lat", "raw_udp", "p50_us"),
    ("lat_busy_poll_vs_raw_udp", "bus_lat_busy", "raw_udp", "p50_us"),
    ("encrypted_vs_plain_reliable", "encrypted", "plain", "msgs_per_s"),
    ("batch64_vs_single_reliable", "batch64", "plain", "msgs_per_s"),
    ("loss10_vs_lossless_reliable", "loss10", "lossless", "msgs_per_s"),
]:
    x, y = med(a, key), med(b, key)
    ratio = f"{x / y:.3f}" if x and y else "n/a"
    print(f"extra scenario={name} a={x} b={y} ratio={ratio} ({key})")
for tag in ["fanout_be", "fanout_rel"]:
    print(f"extra scenario={tag} slowest_of_3_subscribers={med(tag, 'msgs_per_s')} (msgs_per_s)")
PY
