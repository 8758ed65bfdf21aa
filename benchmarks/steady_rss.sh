#!/usr/bin/env bash
# The worker's RSS at a steady rate, with every click open (7-day window), RocksDB state
# and the models on: one `stream-app worker` fed live by `stream-app generate --live`,
# VmRSS sampled every 5 s, then the median and max per 1M clicks sent.
#
#   stream-app kafka start
#   bash benchmarks/steady_rss.sh [CLICKS_PER_SECOND] [SECONDS]     # default 10000 300
#
# docs/throughput.md, State: 10,000 clicks/s for 300 s gave 356 / 415 / 419 MB medians at
# first; 338 / 363 / 389 MB with the tuned allocator and the 32 MiB block cache (loaded
# machine), 320-321 / 345-349 / 351-357 MB in three runs on a quiet one.
set -euo pipefail
rate=${1:-10000}
seconds=${2:-300}
work=$(mktemp -d /tmp/steady-rss-XXXXXX)
export STREAM_APP_APP_ID=steady-$RANDOM STREAM_APP_PARTITIONS=4 STREAM_APP_METRICS_PORT=0
export STREAM_APP_TOPIC_PREFIX=$STREAM_APP_APP_ID- STREAM_APP_MODELS_ENABLED=true
export STREAM_APP_STATE_STORE=rocksdb STREAM_APP_STATE_DIR=$work/state
stream-app create-topics > /dev/null
python -m stream_app worker > "$work/worker.log" 2>&1 &
worker=$!
trap 'kill -TERM $worker 2>/dev/null || true' EXIT
sleep 12  # started, joined, restored (empty)
stream-app generate --live --clicks-per-second "$rate" --duration "$seconds" --campaigns 20 \
  --no-progress > "$work/generate.log" 2>&1 &
generator=$!
: > "$work/rss"
for ((t = 5; t <= seconds; t += 5)); do
  sleep 5
  echo "$t $(awk '/VmRSS/ {print $2}' /proc/$worker/status)" >> "$work/rss"
done
wait $generator
head -1 "$work/generate.log"
python - "$work/rss" "$rate" <<'PY'
import statistics, sys
rows = [tuple(map(int, line.split())) for line in open(sys.argv[1])]
per_million = 1_000_000 / float(sys.argv[2])  # seconds per 1M clicks
by = {}
for t, kb in rows:
    by.setdefault(int((t - 1) // per_million), []).append(kb / 1024)
for i, mb in sorted(by.items()):
    print(f"clicks {i}M-{i + 1}M: RSS median {statistics.median(mb):.0f} MB, max {max(mb):.0f} MB")
PY
echo "worker log and samples in $work"
