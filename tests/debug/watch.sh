#!/bin/bash
# usage: ROOT=/tmp/runs tests/debug/watch.sh NAME  (runs under $ROOT/NAME/r*/, as a loop of --basetemp runs)
# every 5s: a worker-2.log whose last line is its ready line and older than 25 s -> SIGWINCH its worker
while true; do
  for f in ${ROOT:-/tmp/runs}/$1/r*/test_killed*[0-9]/worker-2.log; do
    [ -f "$f.dumped" ] && continue
    [ -f "$f" ] || continue
    if tail -1 "$f" | grep -q "worker ready: " && [ $(( $(date +%s) - $(stat -c %Y "$f") )) -gt 25 ]; then
      pid=$(pgrep -n -f "streamproc worker")  # the restart test runs one worker at a time
      kill -WINCH $pid; touch "$f.dumped"; echo "dumped $f pid $pid" >> ${ROOT:-/tmp/runs}/$1/summary.txt
    fi
  done
  sleep 5
done
