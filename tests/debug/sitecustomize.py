"""Debug aid for a worker that stops handing out records (docs/notes/durability.md, section 4).

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
    or an agent is parked (docs/notes/durability.md, section 8)."""
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


def _trace_folds() -> None:
    """STREAMPROC_DBG_TRACE=1: every fold, assignment, revocation, seek and queue-pressure
    change of a worker, one line each, in ``trace-<pid>.txt`` in its working directory: which
    worker folded a recording's events in which order, under which generation, before or
    after its recovery (docs/notes/durability.md, section 8)."""
    import time

    from faust.streams import current_event

    from streamproc.worker import engine, pipeline

    trace: list = []  # opened at the first line, so processes that fold nothing leave no file

    def line(*parts) -> None:
        if not trace:
            trace.append(open(f"trace-{os.getpid()}.txt", "a", buffering=1))  # noqa: SIM115
        trace[0].write(f"{time.time():.3f} " + " ".join(str(p) for p in parts) + "\n")

    fold = pipeline.Pipeline._fold

    async def traced_fold(self, key, event, source, here):
        before = self._state(event.recording_id)
        current = current_event()
        message = current.message if current is not None else None
        line(
            "fold",
            f"{here.topic}:{here.partition}@{here.offset}",
            key.decode(),
            event.event_id,
            getattr(event, "status", "?"),
            "before",
            before.status if before else None,
            len(before.event_ids) if before else 0,
            "gen",
            getattr(message, "generation_id", None),
            current.app.consumer_generation_id if current else None,
            "flow",
            current.app.flow_control.is_active() if current else None,
            "recovered",
            current.app.tables.recovery.completed.is_set() if current else None,
        )
        return await fold(self, key, event, source, here)

    pipeline.Pipeline._fold = traced_fold

    assigned = engine.StreamprocConsumer.on_partitions_assigned
    revoked = engine.StreamprocConsumer.on_partitions_revoked
    seek = engine.StreamprocConsumer.seek_to_committed

    async def traced_assigned(self, tps, generation_id=0):
        line("assigned", generation_id, sorted(f"{tp.topic}:{tp.partition}" for tp in tps))
        return await assigned(self, tps, generation_id)

    async def traced_revoked(self, tps):
        line("revoked", sorted(f"{tp.topic}:{tp.partition}" for tp in tps))
        await revoked(self, tps)
        line("revoked done")

    async def traced_seek(self):
        committed = await seek(self)
        line("sought", {f"{tp.topic}:{tp.partition}": o for tp, o in committed.items()})
        return committed

    full = engine.StreamprocConsumer.on_buffer_full
    drop = engine.StreamprocConsumer.on_buffer_drop

    def traced_full(self, tp):
        line("buffer_full", f"{tp.topic}:{tp.partition}", "in_recovery", self.app.in_recovery)
        full(self, tp)

    def traced_drop(self, tp):
        line(
            "buffer_drop",
            f"{tp.topic}:{tp.partition}",
            "buffered",
            tp in self._buffered_partitions,
            "paused",
            tp in self._paused_partitions,
            "recovered",
            self.app.tables.recovery.completed.is_set(),
        )
        drop(self, tp)

    engine.StreamprocConsumer.on_buffer_full = traced_full
    engine.StreamprocConsumer.on_buffer_drop = traced_drop
    engine.StreamprocConsumer.on_partitions_assigned = traced_assigned
    engine.StreamprocConsumer.on_partitions_revoked = traced_revoked
    engine.StreamprocConsumer.seek_to_committed = traced_seek


if os.environ.get("STREAMPROC_DBG_TRACE"):
    _trace_folds()
