#!/bin/bash
# Peak resident memory of a demo's node processes.
# usage: scripts/demo_memory.sh BINARY [demo flags...]
# Samples every child's VmRSS every 0.5 s while the demo runs; prints each
# node's VmHWM (peak resident) and their sum, and the largest total RSS seen.
set -u
bin=$1; shift
"$bin" demo --json "$@" > /dev/null &
root=$!
maxtot=0; declare -A hwm
while kill -0 $root 2>/dev/null; do
  tot=0
  for p in $(pgrep -P $root); do
    r=$(awk '/VmRSS/{print $2}' /proc/$p/status 2>/dev/null)
    h=$(awk '/VmHWM/{print $2}' /proc/$p/status 2>/dev/null)
    [ -n "$r" ] && tot=$((tot + r))
    [ -n "$h" ] && hwm[$p]=$h
  done
  [ $tot -gt $maxtot ] && maxtot=$tot
  sleep 0.5
done
s=0
for p in "${!hwm[@]}"; do s=$((s + hwm[$p])); echo "node pid $p VmHWM ${hwm[$p]} kB"; done
echo "sum of VmHWM ${s} kB; largest total VmRSS ${maxtot} kB"
