#!/bin/sh
# Alternates gloo and swarmtrain's bench allreduce (4 members, 16 MiB fp32
# and int8, loopback), REPS times each, one JSON line per run, for the
# table in docs/BENCHMARKS.md. OLD, when set, is another swarmtrain binary
# (the baseline build) run in the same rotation.
#
#   go build -o /tmp/st ./cmd/swarmtrain
#   REPS=3 OLD=/tmp/st-main NEW=/tmp/st sh scripts/bench/compare_gloo.sh
set -eu
REPS=${REPS:-3}
NEW=${NEW:-swarmtrain}
PY=${PY:-/usr/bin/python3}
dir=$(dirname "$0")
for i in $(seq "$REPS"); do
	echo "{\"run\":\"gloo fp32\",\"rep\":$i,\"result\":$($PY "$dir/gloo_allreduce.py" --rounds 10 --json)}"
	for bin in ${OLD:-} "$NEW"; do
		for codec in fp32 int8; do
			echo "{\"run\":\"$bin $codec\",\"rep\":$i,\"result\":$($bin bench allreduce --rounds 10 --codec $codec --json)}"
		done
	done
done
