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
