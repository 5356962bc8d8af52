from hypothesis import given
from hypothesis import strategies as st

from streamproc.worker.gaps import PartitionProgress


def test_progress_reports_offsets_skipped_below_the_commit():
    progress = PartitionProgress()
    for offset in (31, 32, 34):
        progress.add(offset)
    progress.start_at(30)
    assert progress.missing(36) == [30, 33, 35]
    progress.skip_to(36)
    assert progress.missing(40) == [36, 37, 38, 39]


def test_records_handled_twice_or_before_the_start_are_ignored():
    progress = PartitionProgress(low=10)
    for offset in (3, 10, 10, 11):
        progress.add(offset)
    assert progress.low == 12 and progress.above == set()


@given(st.sets(st.integers(0, 60)), st.integers(0, 60))
def test_missing_is_exactly_what_was_not_handled(handled, end):
    progress = PartitionProgress(low=0)
    for offset in sorted(handled, key=lambda o: (o * 7919) % 61):
        progress.add(offset)
    assert progress.missing(end) == [o for o in range(end) if o not in handled]


def _sweeper_tracking(low: int):
    from aiokafka import TopicPartition

    from streamproc.worker.gaps import SkippedRecordSweeper

    sweeper = SkippedRecordSweeper("unused:9092", "group", {"raw": None})
    tp = TopicPartition("raw", 0)
    sweeper._progress[tp] = PartitionProgress(low=low)
    return sweeper, tp


def test_a_late_commit_by_the_previous_owner_is_not_this_engines_skip():
    """Seen in the chaos suite: the member that owned raw:0 committed 477 after this one
    had read 463 at assignment; this engine's seek found 477 and never fetched 463-476."""
    sweeper, tp = _sweeper_tracking(low=463)
    sweeper.sought({tp: 477}, known={})
    assert sweeper._progress[tp].missing(480) == [477, 478, 479]


def test_a_gap_below_this_engines_own_commit_is_still_a_skip():
    sweeper, tp = _sweeper_tracking(low=100)
    for offset in (100, 101, 104):
        sweeper.handled("raw", 0, offset)
    # this engine committed 105 (past 102-103, never handled); another member then 110
    sweeper.sought({tp: 110}, known={tp: 105})
    assert sweeper._progress[tp].missing(112) == [102, 103, 110, 111]


class _Group:
    """The group's committed offsets as the broker answers them."""

    def __init__(self, offsets):
        self.offsets = offsets

    async def committed(self, tp):
        return self.offsets.get(tp)


def _sweeper_with(low: int, group: dict, own: dict):
    from aiokafka import ConsumerRecord, TopicPartition

    from streamproc.worker.gaps import SkippedRecordSweeper

    forwarded = []

    async def forward(record):
        forwarded.append(record.offset)

    sweeper = SkippedRecordSweeper("unused:9092", "group", {"raw": forward}, lambda: own)
    tp = TopicPartition("raw", 0)
    sweeper._progress[tp] = PartitionProgress(low=low)
    sweeper._consumer = _Group({tp: group})

    async def read(tp, start, end):
        return [
            ConsumerRecord("raw", 0, o, 0, 0, b"k", b"v", None, 1, 1, ()) for o in range(start, end)
        ]

    sweeper._read = read
    return sweeper, forwarded


async def test_a_commit_by_another_member_after_the_seek_is_not_this_engines_skip():
    """Chaos suite, gate run 6 of d0c7df1: the member leaving committed 183 after this one
    had sought fetch:3 to 175 and while it was still fetching 175-182 itself."""
    sweeper, forwarded = _sweeper_with(low=175, group=183, own={})
    assert await sweeper.sweep() == 0 and forwarded == []


async def test_this_engines_own_commit_past_unhandled_records_is_swept():
    sweeper, forwarded = _sweeper_with(low=175, group=183, own={tp_key(): 178})
    assert await sweeper.sweep() == 3 and forwarded == [175, 176, 177]


def tp_key():
    from faust.types import TP

    return TP("raw", 0)  # Faust's key type: equal to aiokafka's TopicPartition
