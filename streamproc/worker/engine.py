"""Faust, corrected where it or the embedded broker is wrong, in one place.

Each correction names the defect and the test that shows it; when the defect is gone the
correction goes too. ``docs/notes/durability.md`` has the root-cause notes.

1. ``Recovery._build_highwaters``: a table's recovery reads its changelog up to the high
   watermark, which Faust takes from ListOffsets(latest). Tansu answers that short by up to a
   batch's size minus one (``test_broker_facts.py::test_list_offsets_latest_is_short_after_
   batches``): a memory:// table silently missed the changelog's last entries and a rocksdb://
   store raised ``ConsistencyError`` (persisted offset above the "end") and the worker died.
   Here the end comes from a fetch (``streamproc.kafka.offsets``).
2. ``Recovery._build_offsets``: a local rocksdb store that is really ahead of its changelog
   (the topic was recreated, or an in-memory broker restarted under a kept data dir) is
   discarded and rebuilt from the changelog, with a warning, instead of crash-looping.
3. ``Recovery.on_recovery_completed``: Faust resumed the stream partitions *before* seeking
   them to their committed offsets. In between, its fetcher delivered records from wherever
   the consumer stood before the rebalance (past the committed offset); the seek then reset
   its read offset, the next record looked like a jump, Faust marked the offsets in between
   as a "gap" (done, so committed) and dropped them as already read when the seek fetched
   them again: records never processed, yet committed. faust-streaming #216 was this race
   for apps without tables, fixed there (#217) by seeking first; here the table path seeks
   first too (``tests/integration/test_faust_facts.py`` shows the jump with a plain app).
4. ``Consumer.seek_to_committed``: Faust rewinds every stream partition after a rebalance
   with aiokafka's ``seek_to_committed``, which moves only partitions committed above 0. A
   ``getmany`` that was waiting when the group rebalanced drains records of the partitions it
   asked for as soon as the new assignment is set, and Faust drops them (its flow is stopped
   or the generation changed) expecting that seek to bring them back. On a partition the
   group never committed, nothing did: a restarted worker began the fetch topic where that
   drain ended and skipped every fetch request its killed predecessor had not committed
   (``docs/notes/durability.md``, section 4). Here such a partition goes back to offset 0, which
   on real Kafka resets to the log start if retention removed it (``auto_offset_reset``).
5. ``AIOKafkaConsumerThread.getmany``: Faust asks the consumer thread for records with a
   call whose caller can go away: the Fetcher is stopped (its task cancelled) at every
   rebalance, but the thread-side ``fetched_records`` call goes on waiting, with a reference
   to Faust's *live* set of active partitions. After the rebalance's seek and resume it
   drained the re-fetched records of every stream partition, for nobody: the restarted
   worker's positions stood at the log end, Faust's read offsets at the committed offsets,
   and no record was ever handed to an agent (the "stall after ready" of
   ``docs/notes/durability.md``, caught by ``tests/debug``'s dump). Here the thread gets a
   snapshot of the active partitions, and records drained for an abandoned call are put
   back (each partition sought to its first drained offset, in the same step as the drain,
   so nothing else moved it in between).
6. ``Consumer.wait_first`` (a speed-up, not a defect; on unless
   ``STREAMPROC_DIRECT_DELIVERY=0``): a record delivery that completes in one step skips
   mode's four-task race; one that would wait joins the race where it stopped
   (``delivery.py``, ``tests/unit/test_delivery.py``).
7. ``Consumer.ack``, ``on_partitions_assigned``, ``_commit_offsets``: Faust clears a
   partition's ack bookkeeping when the partition is revoked, *then* waits for the records
   in flight; their acks land in the cleared bookkeeping as if no offset had been
   committed, and the next generation commits them, ahead of the records it re-reads from
   the group's committed offset (``tests/unit/test_rebalance_bookkeeping.py``: acked during
   revocation, offset 79 is committed as 80 by the next generation before it delivered 79).
   The records may even be ones the stream skipped unhandled (Faust's stream acks a record
   it drops because the flow stopped). A commit in flight across a rebalance likewise
   writes its offsets into the next generation's record of what it committed, even when the
   broker refused it. This was the chaos suite's rare "committed past records never
   handled" (``docs/notes/durability.md``, section 9). Here each generation starts with no acks,
   an ack for a record of an earlier generation is dropped (the record is read again from
   the committed offset), and a commit that began before a rebalance leaves the offsets
   the rebalance's seek set.
8. ``App._on_agent_error``: when an agent raises, Faust commits, and its supervisor restarts
   the agent; but ``take_events`` acks every event of the batch the agent held (in a
   ``finally``), so that commit covers a batch whose table writes were never flushed, and
   the records the crashed stream had already taken are not handed to the new one until the
   next rebalance: the worker stays up, reading nothing (``docs/notes/durability.md``, section
   11; ``tests/integration/test_agent_crash.py``). Here the process ends at once, before
   anything else runs on its loop, as a SIGKILL would end it (the kill tests show that
   loses nothing): the supervisor starts a worker that reads on from the last commit.
9. ``Consumer.on_buffer_drop``: Faust takes a partition whose agent queue is under pressure
   out of the fetch set (``on_buffer_full``) and puts it back when the queue drains, whatever
   paused it meanwhile. A rebalance clears the queue without draining it; the drain fires at
   the agent's next read, which can fall in the next generation's table recovery, when every
   stream partition is paused: the partition is fetched again and its records can be folded
   before its table is recovered (``tests/unit/test_buffer_pressure.py``). Here a revoked
   partition leaves the pressure bookkeeping and a drained queue does not resume a paused
   partition.
10. ``Recovery.on_recovery_completed`` and ``_resume_streams``: a table recovery that ends
   after the next rebalance has begun resumed the flow and the stream partitions that
   rebalance's revocation had stopped, because the generation Faust checks changes only at
   the next assignment, seconds later when the group waits for a killed member's session
   (``tests/unit/test_stale_recovery.py``): the worker went on folding in the middle of the
   rebalance (docs/notes/durability.md, section 13). Here nothing is sought or resumed once a
   rebalance has begun since the assignment the recovery serves.
11. ``AIOKafkaConsumerThread._commit`` (an aiokafka defect, seen on Kafka): aiokafka retries
   a commit while its coordinator is away and reads the group's generation and member id
   anew at each attempt, so a commit made in one generation and retried until after the
   member rejoined is sent, and accepted, in the next one: it commits offsets the new
   generation has not read again (``tests/integration/test_aiokafka_facts.py``). With a
   Kafka node SIGKILLed for longer than the session, the chaos suite's sweeper found those
   offsets "committed but never handled" here (docs/notes/durability.md, section 14). Here a
   commit whose assignment was replaced before it was sent fails as a rebalanced one does.
   Likewise a commit from a member the group fenced (after ``UnknownMemberIdError``
   aiokafka resets its generation to -1 and its member id to ""): aiokafka sends it anyway,
   and Kafka takes a commit with no generation from anyone while the group is empty, as
   it is once its only member expired. Faust commits what the revocation acked, records
   the stream skipped included; the Java client refuses such a commit, and so does this.
   And Faust records a commit the group refused as committed; here it is not.
12. ``Consumer.getmany``: Faust hands out the records the consumer thread drained only for
   partitions still active when it iterates them (its live set of active partitions); the
   records of a partition paused meanwhile (a table recovery after a rebalance) are
   dropped, while the thread's position has moved past them. The next record then reads as
   a jump, Faust marks the offsets in between as a gap, and commits them: records never
   folded (the Kafka chaos run after a fenced worker rejoined, docs/notes/durability.md section
   14; ``tests/unit/test_rebalance_bookkeeping.py::test_records_fetched_for_a_paused_
   partition_are_put_back``). Here each partition is sought back to its first record
   fetched but not delivered, when nothing has sought it since.
13. ``TransactionManager.send`` (with ``STREAMPROC_PROCESSING_GUARANTEE=exactly_once``):
   Faust puts a message in the transaction of the partition it is sent *to*, looked up in
   the consumer's metadata. A message to a topic the worker does not read (every derived
   topic) found none and went out on the plain producer, outside every transaction, seen by
   a ``read_committed`` consumer before its record was committed; one to another partition
   of a topic it reads (the join's links, the re-keyed topic) waited in that partition's
   transaction, which only that partition's own input commits (with none, the broker aborts
   it), and on another worker's partition there is no producer for it
   (``tests/integration/test_faust_eos_facts.py``, with Faust as shipped). Here a message
   sent while a record is handled goes into the transaction of that record's partition, the
   one that commits the record's offset, as Kafka Streams ties a task's outputs to its input.
14. ``Consumer.force_commit`` (exactly-once): Faust commits on a timer while agents run, so
   a transaction could commit a record's outputs before its offset was acknowledged, and the
   record's outputs came again after a crash. Here a commit waits at the ``CommitGate``
   (``commit_gate.py``) until no record is between its first send and its acknowledgement.
15. ``Consumer.on_partitions_revoked`` (exactly-once): Faust's revocation forgets the acks of
   every revoked partition (all of them: the group's protocol is eager) *before* it commits,
   so its commit carries none of the offsets acknowledged since the last one, while their
   records' outputs stay in the open transactions. A partition this worker keeps keeps its
   producer and that transaction; its records are read again from the committed offset and
   their outputs sent again into it, and the next commit makes both copies visible
   (``tests/integration/test_faust_eos_facts.py::test_a_record_handled_before_a_rebalance_
   is_committed_once``; the chaos suite's ``exactly-once`` run read download messages twice).
   Here the revocation first commits every transaction with the offsets acknowledged so
   far, at the commit gate, as Kafka Streams commits its tasks when they are revoked; a
   transaction that cannot commit then ends the process (its successor's producers abort it).
16. ``Consumer._add_gap``: Faust notes the offsets it did not read between two records (a
   transaction marker, an aborted or compacted record) as a gap, done, and includes in it
   the record after the gap. Once that record is acked its offset is in the acks twice, and
   the run of consecutive offsets Faust commits stops at the duplicate: each commit stopped
   at the first record after a marker, behind the acks. With exactly-once every partition
   the fold writes transactionally (the fetch topic) has a marker per transaction, so
   commits lagged while the outputs of the records behind went into the transactions they
   committed; a worker killed then left those outputs committed without their offsets, and
   its successor sent them again (the chaos suite's ``exactly-once-cluster`` run: download
   messages read twice; ``tests/unit/test_gap_after_a_marker.py``). Here the gap ends before
   the record that ends it.
17. ``TransactionManager.on_rebalance`` (exactly-once): Faust stops the transactional
   producers of the partitions a rebalance revoked and starts those of the partitions
   assigned, but the revoked set it is given was empty at every rebalance of the chaos runs
   (its "Stopping N transactional producers" line: 0 times in over a hundred rebalances).
   A partition that went to another worker and came back found its old producer, fenced
   meanwhile by the other worker's: the first send failed, Faust's producer buffer (which
   sends the changelog) crashed, and the worker ended, or once stopped folding altogether
   (the chaos suite's ``exactly-once`` run 6 of 2026-12-05: nothing folded for 10 minutes).
   Here every rebalance stops every transactional producer and starts one per partition
   assigned; the revocation has committed every transaction (15.), so none holds anything,
   and each new producer's ``InitProducerId`` aborts what an earlier owner left open.
18. ``AIOKafkaConsumerThread.on_start`` (an aiokafka defect, seen on a Kafka cluster): the
   member's committed-offset reads raise the group-level error of Kafka's answer instead of
   taking a coordinator that moved for "nothing committed" and starting over from the
   reset policy (``streamproc/kafka/coordinator.py``, which the sweeper, the retry relay,
   replay and status use too).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalGenerationError, KafkaError
from faust.streams import current_event
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ProcessingGuarantee
from faust.types.tuples import ack_lock
from mode.services import WaitResults
from mode.utils.futures import notify

from streamproc.kafka.coordinator import raise_offset_fetch_errors
from streamproc.kafka.offsets import read_log_ends
from streamproc.settings import Settings
from streamproc.worker.commit_gate import CommitGate
from streamproc.worker.delivery import resume, step, waits_on

log = logging.getLogger(__name__)


FAUST_LOGGER = logging.getLogger("faust.streamproc")
"""Faust's own progress lines from the services below stay with Faust's (quiet by default)."""
DEFAULTS = Settings()
"""The engine's defaults are the settings' (one owner)."""


class StreamprocRecovery(Recovery):
    logger = FAUST_LOGGER
    assigned_in_rebalance = 0
    """``App.rebalancing_count`` when the assignment this recovery serves was made (10.)."""

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        self.assigned_in_rebalance = self.app.rebalancing_count
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """Faust's, with the stream partitions sought before they are resumed (3. above), and
        nothing resumed once the next rebalance has begun (10.)."""
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(
                    self.actives_for_table[table], self.standbys_for_table[table]
                )
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        await self._seek_and_resume(generation_id)

    async def _resume_streams(self, generation_id: int = 0) -> None:
        """Faust's path for an app without tables (a fetch worker), as above."""
        await self.app.on_rebalance_complete.send()
        await self._seek_and_resume(generation_id)

    async def _seek_and_resume(self, generation_id: int) -> None:
        consumer = self.app.consumer
        assignment = consumer.assignment()
        if self._superseded(generation_id):
            return
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
            if self._superseded(generation_id):
                return
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        self.completed.set()
        self.app.flow_control.resume()
        consumer.resume_flow()
        await self.app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")
        log.info("worker ready: %d partitions assigned", len(assignment))

    def _superseded(self, generation_id: int) -> bool:
        """True once a rebalance has begun after the one whose assignment this recovery
        serves: its streams are then the next assignment's to resume (10. above)."""
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again (generation %r)", generation_id)
            return True
        if self.app.rebalancing_count != self.assigned_in_rebalance:
            log.info("a rebalance began while the tables recovered: the streams stay stopped")
            return True
        return False

    async def _build_highwaters(
        self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        """Faust's ``highwater - 1`` convention, with the end read from a fetch."""
        wanted = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        while True:
            try:
                ends = await read_log_ends(_bootstrap(self.app), wanted)
                break
            except KafkaError as exc:
                # Faust's recovery waits for the broker; so does this (``_wait`` bounds it).
                log.warning("cannot read changelog ends yet (%r); retrying", exc)
                await asyncio.sleep(1.0)
        destination.clear()
        destination.update({tp: ends[TopicPartition(tp.topic, tp.partition)] - 1 for tp in tps})
        log.debug("%s changelog ends: %s", title, dict(destination))

    async def _build_offsets(
        self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title != "active":
            return
        stale = {
            tp
            for tp in tps
            if destination[tp] is not None and destination[tp] > self.active_highwaters[tp]
        }
        for table in {self.tp_to_table[tp] for tp in stale}:
            log.warning(
                "the local store of table %s is ahead of its changelog (%s); "
                "discarding it and rebuilding from the changelog",
                table.name,
                ", ".join(
                    f"partition {tp.partition}: store applied up to offset {destination[tp]}, "
                    f"changelog ends at offset {self.active_highwaters[tp] + 1}"
                    for tp in sorted(stale)
                    if self.tp_to_table[tp] is table
                ),
            )
            table.data.reset_state()
            for tp in self.actives_for_table[table]:
                destination[tp] = -1
            for tp in self.standbys_for_table[table]:
                self.standby_offsets[tp] = -1


class StreamprocConsumer(faust_aiokafka.Consumer):
    logger = FAUST_LOGGER

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:  # noqa: ASYNC109 (Faust's)
        """Faust's, with the records it fetched but does not deliver put back (12. above)."""
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
            try:
                await self.perform_seek()
            except Exception as exc:  # noqa: BLE001 - Faust's: the next rebalance seeks again
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return
        delivered: dict[TP, int] = {}
        to_message = self._to_message
        try:
            for tp, record in self.scheduler.iterate(records):
                if not self.flow_active or self.app.consumer_generation_id != generation_id:
                    break
                if (
                    active_partitions is None
                    or tp in active_partitions
                    or tp in self._buffered_partitions
                ):
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    delivered[tp] = record.offset
                    yield tp, to_message(tp, record)
        finally:
            if self.app.consumer_generation_id == generation_id:
                self._put_back(records, delivered)

    def _put_back(self, records: Mapping[TP, list[Any]], delivered: Mapping[TP, int]) -> None:
        """Seek each partition back to its first record fetched but not delivered, if the
        fetch left it where it stands (nothing has sought it since)."""
        client = self._thread._consumer
        assignment = client._subscription.subscription.assignment if client else None
        if assignment is None:
            return
        undelivered = {}
        for tp, fetched in records.items():
            last = delivered.get(tp)
            rest = [r.offset for r in fetched if last is None or r.offset > last]
            if not rest or tp not in assignment.tps:
                continue
            if assignment.state_value(tp).position == fetched[-1].offset + 1:
                self._thread.seek(tp, rest[0])
                undelivered[tp] = len(rest)
        if undelivered:
            log.info(
                "put back %d record(s) fetched but not delivered (%s)",
                sum(undelivered.values()),
                ", ".join(sorted(f"{tp.topic}:{tp.partition}" for tp in undelivered)),
            )

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:  # noqa: ASYNC109 (mode's)
        """mode's race, skipped for a record delivery that completes at once (6. above,
        ``delivery.py``) when ``STREAMPROC_DIRECT_DELIVERY`` is on."""
        if (
            getattr(self.app, "direct_delivery", False)
            and len(coros) == 2
            and waits_on(coros[1], self.suspend_flow)
            and not (self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set())
        ):
            callback, suspended = coros
            try:
                finished, outcome = step(callback)
            except BaseException:
                suspended.close()
                raise
            if finished:
                suspended.close()
                return WaitResults([callback], [outcome], False)
            coros = (resume(callback, outcome), suspended)
        return await super().wait_first(*coros, timeout=timeout)

    def _new_consumer_thread(self) -> Any:
        return StreamprocConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rebalances = 0
        """Rebalances begun so far: a commit that saw this change was not this one's."""
        self.sought: dict[TP, int | None] = {}
        """Where this generation's seek to committed offsets put each partition."""

    def ack(self, message: Any) -> bool:
        """Faust's, dropping the ack of a record of an earlier generation (7. above)."""
        if message.generation_id == self.app.consumer_generation_id:
            return bool(super().ack(message))
        with ack_lock:
            message.acked = True
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)
        return False

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.rebalances += 1
        self.sought = {}
        self._buffered_partitions.difference_update(revoked)
        if self.app.commit_gate.enabled:
            await self._commit_what_was_acked()
        # No suspension between that commit and Faust forgetting the acks: Faust's revocation
        # clears them before its first await, and no record is acknowledged in between.
        await super().on_partitions_revoked(revoked)

    async def _commit_what_was_acked(self) -> None:
        """Exactly-once: commit every transaction with the offsets acknowledged so far, before
        Faust's revocation forgets them (15. above). A transaction that cannot commit holds
        outputs whose offsets this worker is about to forget: the process ends, and the
        transactional producers of the worker that replaces it abort it."""
        async with self.app.commit_gate.committing():
            try:
                await faust_aiokafka.Consumer.force_commit(self, start_new_transaction=True)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the transaction open
                log.critical(
                    "cannot commit the transactions before a rebalance (%r): stopping this"
                    " worker so that its transactions are aborted and a new one reads on from"
                    " the last commit",
                    exc,
                )
                logging.shutdown()
                os._exit(EXIT_TRANSACTION_FAILED)

    def on_buffer_drop(self, tp: TP) -> None:
        """Faust's, leaving a partition paused since its queue filled paused (9. above)."""
        if tp in self._buffered_partitions:
            self._buffered_partitions.discard(tp)
            if tp not in self._paused_partitions:
                self._get_active_partitions().add(tp)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Faust's, with no acks carried over from earlier generations (7. above): every
        partition was revoked before this, and nothing of this generation is read yet."""
        self._acked.clear()
        self._acked_index.clear()
        self._gap.clear()
        await super().on_partitions_assigned(assigned, generation_id)

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        """Faust's, leaving a rebalance's seek in place of a commit that began before it
        (7. above), and recording only a commit the group took (11.): Faust records a
        refused one too."""
        rebalances = self.rebalances
        before = {tp: self._committed_offset.get(tp) for tp in offsets}
        did_commit = bool(await super()._commit_offsets(offsets, start_new_transaction))
        if self.rebalances != rebalances:
            for tp in offsets:
                sought = self.sought.get(tp)  # None: not sought yet in this generation
                if sought:
                    self._committed_offset[tp] = sought
                else:
                    self._committed_offset.pop(tp, None)
        elif not did_commit:
            for tp, previous in before.items():
                if previous is None:
                    self._committed_offset.pop(tp, None)
                else:
                    self._committed_offset[tp] = previous
        return did_commit

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's, without the record that ends the gap (16. above): Faust's caller passes
        that record's offset as the gap's end, and Faust includes its end."""
        await super()._add_gap(tp, offset_from, offset_to - 1)

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """Faust's, at the commit gate: between records (14. above)."""
        async with self.app.commit_gate.committing():
            return bool(await super().force_commit(topics, start_new_transaction))

    async def seek_to_committed(self) -> dict[TP, int | None]:
        """aiokafka's, with never-committed stream partitions sent to offset 0 (4. above);
        then every listener of ``App.seek_listeners`` hears where each partition went."""
        thread = self._thread
        changelogs = set(self.app.tables.changelog_topics)
        known = dict(self._committed_offset)
        committed = await thread.call_thread(
            _seek_to_committed_or_start, thread._ensure_consumer(), changelogs
        )
        self.sought = dict(committed)
        for listener in getattr(self.app, "seek_listeners", ()):
            listener(committed, known)
        return committed


NO_GENERATION = -1
"""aiokafka's generation of a member that is not in the group (``reset_generation``)."""


def bind_commits_to_their_assignment(consumer: AIOKafkaConsumer) -> None:
    """Make every commit of ``consumer`` fail, as one the group refused, when the assignment
    it was made for has been replaced by the time it is sent, or when the member has no
    generation (11. above). Idempotent."""
    coordinator = consumer._coordinator
    if coordinator is None or getattr(coordinator, "_commits_bound", False):
        return
    send = coordinator._do_commit_offsets

    async def _do_commit_offsets(assignment: Any, offsets: Any) -> Any:
        if assignment is not None and not assignment.active:
            raise IllegalGenerationError(
                "the assignment this commit was made for was replaced by a rebalance"
            )
        if coordinator.generation == NO_GENERATION or not coordinator.member_id:
            raise IllegalGenerationError("this member was fenced and has not rejoined yet")
        return await send(assignment, offsets)

    coordinator._do_commit_offsets = _do_commit_offsets
    coordinator._commits_bound = True


async def _seek_to_committed_or_start(
    client: AIOKafkaConsumer, changelogs: set[str]
) -> dict[TP, int | None]:
    committed = await client.seek_to_committed()
    assigned = client.assignment()
    for tp, offset in committed.items():
        if not offset and tp.topic not in changelogs and tp in assigned:
            client.seek(tp, 0)
    return committed


class _Fetch:
    """One request for records handed to the consumer thread; abandoned if its caller is
    cancelled before it gets them."""

    __slots__ = ("abandoned", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.abandoned = False


class StreamprocConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    logger = FAUST_LOGGER

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        """Faust's consumer, with ``STREAMPROC_FETCH_MAX_WAIT_MS`` (Faust fixes 1500 ms).

        aiokafka keeps one fetch in flight per broker and leaves out of it the partitions whose
        records it still buffers; a record arriving on one of those waits for the fetch in flight to
        end, so this bounds the latency each hop adds (docs/notes/performance-history.md: 755 ms per
        hop for a plain Faust forwarder with 1500, 10-20 ms with 50). It stays 1500 by
        default because the embedded broker, storing its log on S3, answers a fetch with
        only what its storage read in that time: nothing at all with 20-100 ms
        (``test_broker_facts.py::test_a_short_fetch_wait_reads_nothing_from_s3_storage``).
        """
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # read when it starts
        return consumer

    async def on_start(self) -> None:
        """Faust's, with the group-level errors of committed-offset reads raised (18. above)."""
        await super().on_start()
        raise_offset_fetch_errors(self._ensure_consumer())

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """Faust's, with commits bound to the assignment they were made in (11. above)."""
        bind_commits_to_their_assignment(self._ensure_consumer())
        return bool(await super()._commit(offsets))

    async def getmany(self, active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109 (Faust's)
        """Faust's, with a snapshot of the partitions and abandoned fetches put back (5.)."""
        consumer = self._ensure_consumer()
        partitions = frozenset(active_partitions or ())
        if not partitions:  # aiokafka reads "no partitions" as "all partitions"
            return {}
        fetch = _Fetch()
        try:
            return await self.call_thread(
                self._fetch_for,
                consumer,
                partitions,
                fetch,
                timeout=timeout,
                max_records=consumer._max_poll_records,
            )
        except BaseException:
            with fetch.lock:
                fetch.abandoned = True
            raise

    async def _fetch_for(
        self,
        consumer: AIOKafkaConsumer,
        partitions: frozenset[Any],
        fetch: _Fetch,
        timeout: float,  # noqa: ASYNC109 (passed on to Faust's _fetch_records)
        max_records: int | None,
    ) -> Any:
        records = await self._fetch_records(
            consumer, set(partitions), timeout=timeout, max_records=max_records
        )
        with fetch.lock:
            if not fetch.abandoned:
                return records
        assigned = consumer.assignment()
        for tp, drained in records.items():
            if drained and tp in assigned:
                consumer.seek(tp, drained[0].offset)
        if records:
            log.info(
                "put back %d record(s) fetched for a reader that a rebalance stopped (%s)",
                sum(len(drained) for drained in records.values()),
                ", ".join(sorted(f"{tp.topic}:{tp.partition}" for tp in records)),
            )
        return {}


class StreamprocTransactionManager(TransactionManager):
    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Any:
        """In the transaction of the record being handled (correction 13)."""
        event = current_event()
        if event is None:  # not sent for a record (a timer's): Faust's choice
            return await super().send(topic, key, value, partition, timestamp, headers)
        source = event.message.tp
        group = self.app.assignor.group_for_topic(source.topic)
        return await self.producer.send(
            topic,
            key,
            value,
            partition,
            timestamp,
            headers,
            transactional_id=f"{self.app.conf.id}-{group}-{source.partition}",
        )

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP]
    ) -> None:
        """A new transactional producer for every partition assigned, every old one stopped
        (17. above), at the commit gate."""
        producer = self.producer
        async with self.app.commit_gate.committing():
            for transactional_id in list(producer._transaction_producers):
                await producer.stop_transaction(transactional_id)
            await self._start_transactions(sorted(self._tps_to_transactional_ids(assigned)))


class StreamprocTransport(faust_aiokafka.Transport):
    Consumer = StreamprocConsumer
    TransactionManager = StreamprocTransactionManager


def _bootstrap(app: Any) -> str:
    return ",".join(f"{url.host}:{url.port or 9092}" for url in app.conf.broker_consumer)


class StreamprocTableManager(TableManager):
    logger = FAUST_LOGGER

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = StreamprocRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


EXIT_AGENT_CRASHED = 70
"""The worker's exit status after an agent crashed (EX_SOFTWARE)."""
EXIT_TRANSACTION_FAILED = 75
"""The worker's exit status after a transaction it must commit failed (EX_TEMPFAIL)."""


class App(faust.App):
    """A Faust app whose tables recover through ``StreamprocRecovery`` and whose consumer
    seeks through ``StreamprocConsumer``."""

    logger = FAUST_LOGGER

    def __init__(
        self,
        *args: Any,
        fetch_max_wait_ms: int = DEFAULTS.fetch_max_wait_ms,
        direct_delivery: bool = DEFAULTS.direct_delivery,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, TableManager=StreamprocTableManager, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.direct_delivery = direct_delivery
        self.seek_listeners: list[Callable[[Mapping[Any, int | None], Mapping[Any, int]], None]]
        self.seek_listeners = []
        """Called after every seek to committed offsets with ``{tp: committed or None}`` and
        what this worker knew committed before (its own commits and its last seek)."""
        self.commit_gate = CommitGate(
            enabled=self.conf.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE
        )
        """Agents hold it while a record is handled; commits wait for it (14. above)."""

    def _new_transport(self) -> StreamprocTransport:
        return StreamprocTransport(self.conf.broker_consumer, self)

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        """Correction 8: end the process, with no await (nothing else may commit first)."""
        log.critical(
            "agent %s crashed: stopping this worker so that a new one reads on from the last"
            " commit",
            agent.name,
            exc_info=exc,
        )
        logging.shutdown()
        os._exit(EXIT_AGENT_CRASHED)
