#!/bin/bash
# usage: ROOT=/tmp/runs tests/debug/watch.sh NAME  (runs under $ROOT/NAME/r*/, as a loop of --basetemp runs)
# every 5s: a worker-2.log whose last line is its ready line and older than 25 s -> SIGWINCH its worker
while true; do
  for f in ${ROOT:-/tmp/runs}/$1/r*/test_killed*[0-9]/worker-2.log; do
    [ -f "$f.dumped" ] && continue
    [ -f "$f" ] || continue
    if tail -1 "$f" | grep -q "worker ready: " && [ $(( $(date +%s) - $(stat -c %Y "$f") )) -gt 25 ]; then
      # the worker still running in that test's folder (workers run with it as their cwd)
      for pid in $(pgrep -f "streamproc worker"); do
        if [ "$(readlink /proc/$pid/cwd)" = "$(dirname "$f")" ]; then
          kill -WINCH $pid; touch "$f.dumped"; echo "dumped $f pid $pid" >> ${ROOT:-/tmp/runs}/$1/summary.txt
        fi
      done
    fi
  done
  sleep 5
done
