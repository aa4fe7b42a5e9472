#!/usr/bin/env bash
# compare.sh's four scenarios for two commits of the bus and Zenoh, interleaved in one run (Zenoh,
# then BASE, then HEAD, round after round), so that drift on a shared machine hits all three
# alike. Each commit's bus-bench is built in a worktree of its own. Prints every result line, then
# for each commit one line per scenario in compare.sh's format:
#   compare commit=<rev> scenario=<mode>/<reliability>/<size> bus=<x> zenoh=<y> ratio=<bus/zenoh> (metric)
#
# Usage: integration/scripts/compare-commits.sh BASE [HEAD] [ROUNDS]
#   PEER_BENCH  a writable copy of shared/peer-bench (Zenoh's harness is built in it);
#               default ../shared/peer-bench beside the checkout
#   SECS, COUNT as for compare.sh (seconds per throughput run, pings per latency run)
#   BENCH_TARGET_DIR  a cargo target directory both builds share (dependencies are built once;
#               keep it between runs to build only what changed); default a temporary one
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
peer_bench=${PEER_BENCH:-$root/../shared/peer-bench}
base=${1:?usage: compare-commits.sh BASE [HEAD] [ROUNDS]}
head=${2:-HEAD}
rounds=${3:-3}
secs=${SECS:-3}
count=${COUNT:-5000}

(cd "$peer_bench/zenoh" && cargo build --release --quiet)
zen="$peer_bench/zenoh/target/release/zenoh-peer-bench"

work=$(mktemp -d)
out="$work/results"
cleanup() {
  for rev in base head; do git -C "$root" worktree remove --force "$work/$rev" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
target=${BENCH_TARGET_DIR:-$work/target}
declare -A bin
for rev in base head; do
  commit=$([[ $rev == base ]] && echo "$base" || echo "$head")
  git -C "$root" worktree add --detach --quiet "$work/$rev" "$commit"
  (cd "$work/$rev" && CARGO_TARGET_DIR=$target cargo build --release --quiet -p integration --bin bus-bench)
  cp "$target/release/bus-bench" "$work/bus-bench-$rev"
  bin[$rev]="$work/bus-bench-$rev"
done

run() { # tag, binary, arguments...
  local tag=$1 binary=$2
  shift 2
  "$binary" "$@" 2>/dev/null | grep '^peer=' | sed "s/^/commit=$tag /" | tee -a "$out" || true
}
for s in "thr best_effort 64 udp" "thr best_effort 1024 udp" "thr reliable 64 tcp" "lat best_effort 64 udp"; do
  read -r mode rel size ztransport <<<"$s"
  for ((r = 0; r < rounds; r++)); do
    if [[ $mode == thr ]]; then
      run zenoh "$zen" thr --transport "$ztransport" --size "$size" --secs "$secs" --reliability "$rel"
      for rev in base head; do run "$rev" "${bin[$rev]}" thr --size "$size" --secs "$secs" --reliability "$rel"; done
    else
      run zenoh "$zen" lat --transport "$ztransport" --size "$size" --count "$count" --reliability "$rel"
      for rev in base head; do run "$rev" "${bin[$rev]}" lat --size "$size" --count "$count" --reliability "$rel"; done
    fi
  done
done

python3 - "$out" "$base" "$head" <<'PY'
import statistics, sys
rows = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in open(sys.argv[1])]
names = {"base": sys.argv[2], "head": sys.argv[3]}
def med(commit, mode, rel, size, key):
    v = [float(r[key]) for r in rows if r.get("commit") == commit and r.get("mode") == mode
         and r.get("reliability") == rel and r.get("size") == size and key in r]
    return statistics.median(v) if v else None
for commit in ["base", "head"]:
    for mode, rel, size in [("thr", "best_effort", "64"), ("thr", "best_effort", "1024"),
                            ("thr", "reliable", "64"), ("lat", "best_effort", "64")]:
        key = "msgs_per_s" if mode == "thr" else "p50_us"
        b, z = med(commit, mode, rel, size, key), med("zenoh", mode, rel, size, key)
        ratio = f"{b / z:.3f}" if b and z else "n/a"
        print(f"compare commit={names[commit]} scenario={mode}/{rel}/{size} bus={b} zenoh={z} ratio={ratio} ({key})")
PY
