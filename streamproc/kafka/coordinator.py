"""A group's committed offsets read right while its coordinator moves.

aiokafka asks for committed offsets with OffsetFetch v2-v3, whose answer carries a
group-level error code beside the partitions, and reads only the partitions. Apache Kafka
answers a coordinator that moved or is still loading the group (NOT_COORDINATOR,
COORDINATOR_LOAD_IN_PROGRESS) at that level, with no partitions at all; aiokafka took that
as "nothing committed" (``test_aiokafka_facts.py::test_an_offset_fetch_answered_by_a_node_
that_is_not_the_coordinator``, a 3-node Kafka cluster). A member then started its partitions over
from the reset policy, and a plain ``committed()`` answered None, every time, because
nothing marked the coordinator dead: the chaos suite's ``cluster`` run (its coordinator
SIGKILLed) had the sweeper report 532 fetch requests below the engine's own commit "never
handled" and send them round again (gate of 2026-12-05, run 3). Here the group-level error
is raised like the partition-level one: the coordinator is looked up again and the read
retried, as aiokafka already does for these errors on a partition.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka import errors as Errors
from aiokafka.protocol.commit import OffsetFetchRequest

COORDINATOR_GONE = (Errors.NotCoordinatorForGroupError, Errors.GroupCoordinatorNotAvailableError)


def raise_offset_fetch_errors(consumer: AIOKafkaConsumer) -> None:
    """Make ``consumer``'s committed-offset reads raise the group-level error of Kafka's
    answer (a started consumer with a group). Idempotent."""
    coordinator = consumer._coordinator
    if coordinator is None or getattr(coordinator, "_offset_fetch_errors_raised", False):
        return
    send = coordinator._send_req

    async def _send_req(request: Any) -> Any:
        response = await send(request)
        if isinstance(request, OffsetFetchRequest):
            error = Errors.for_code(getattr(response, "error_code", 0))
            if error is not Errors.NoError:
                if error in COORDINATOR_GONE:
                    coordinator.coordinator_dead()
                raise error()
        return response

    coordinator._send_req = _send_req
    coordinator._offset_fetch_errors_raised = True


async def start_group_reader(bootstrap: str, group_id: str) -> AIOKafkaConsumer:
    """A started consumer that reads ``group_id``'s committed offsets (it never joins the
    group nor commits); the caller stops it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    raise_offset_fetch_errors(consumer)
    return consumer
