"""Debug aid for a worker that stops handing out records (docs/durability.md, section 4).

Put this directory on PYTHONPATH and set STREAMPROC_DBG_DUMP=1 for the test run (the worker
subprocesses inherit both); SIGWINCH to a worker then writes to its log every task of Faust's
consumer-thread loop, aiokafka's fetch state per partition, Faust's flow and offsets, and
every task of the agents' (main) loop.
``watch.sh NAME`` sends that signal to a restarted worker whose log has ended in its ready
line for 25 s. Not part of the product; nothing imports it.
"""

import asyncio
import gc
import io
import os
import signal
import sys
import traceback


def _dump_thread(thread, out) -> None:
    print("=== consumer thread", thread, "loop", thread.thread_loop, file=out)
    client = thread._consumer
    if client is None:
        return
    fetcher = client._fetcher
    print("in flight", fetcher._in_flight, "pending", fetcher._pending_tasks, file=out)
    print("buffered", {tp: type(v).__name__ for tp, v in fetcher._records.items()}, file=out)
    subscription = client._subscription.subscription
    print("subscription", subscription and subscription.topics, file=out)
    if subscription and subscription.assignment:
        for tp in sorted(subscription.assignment.tps):
            state = subscription.assignment.state_value(tp)
            print(
                f"  {tp} position={state._position} status={state._status} "
                f"paused={state.paused} reset={state._reset_strategy} hw={state.highwater}",
                file=out,
            )
    for task in asyncio.all_tasks(thread.thread_loop):
        print("--- task", task, file=out)
        task.print_stack(limit=30, file=out)
    consumer = thread.consumer
    print("faust flow_active", consumer.flow_active, file=out)
    print("active", consumer._active_partitions, "paused", consumer._paused_partitions, file=out)
    print("read offsets", dict(consumer._read_offset), file=out)


def _dump_main_loop(out) -> None:
    """Every task of the agents' loop (the signal arrives on its thread): where a delivery
    or an agent is parked (docs/durability.md, section 8)."""
    loop = asyncio._get_running_loop()
    if loop is None:
        return
    print("=== main loop", loop, file=out)
    for task in asyncio.all_tasks(loop):
        print("--- task", task, file=out)
        task.print_stack(limit=30, file=out)


def _dump(signum, frame) -> None:
    out = io.StringIO()
    try:
        from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

        for obj in gc.get_objects():
            if isinstance(obj, AIOKafkaConsumerThread):
                _dump_thread(obj, out)
        _dump_main_loop(out)
    except Exception:
        traceback.print_exc(file=out)
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()


if os.environ.get("STREAMPROC_DBG_DUMP"):
    signal.signal(signal.SIGWINCH, _dump)
