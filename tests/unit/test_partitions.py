"""The kept-hash partitioner picks the partitions aiokafka's default partitioner picks: the
worker's state, the edge's raw records and the re-key check must all agree with every other
Kafka client that hashes with murmur2."""

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from streamproc.kafka.partitions import KeyHashPartitioner, partition_for

keys = st.binary(min_size=0, max_size=64)
partition_lists = st.lists(st.integers(0, 1000), min_size=1, max_size=64, unique=True).map(sorted)


@given(keys, partition_lists)
def test_a_key_goes_where_the_default_partitioner_sends_it(
    key: bytes, partitions: list[int]
) -> None:
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert KeyHashPartitioner()(key, partitions, partitions) == expected
    assert KeyHashPartitioner()(key, partitions, partitions) == expected  # kept, same answer


@given(keys, st.integers(1, 256))
def test_partition_for_is_the_default_partitioner_over_every_partition(
    key: bytes, count: int
) -> None:
    assert partition_for(key, count) == DefaultPartitioner()(key, list(range(count)), None)


@given(partition_lists, st.lists(st.integers(0, 1000), max_size=8))
def test_a_record_without_a_key_goes_to_an_available_partition(
    partitions: list[int], available: list[int]
) -> None:
    chosen = KeyHashPartitioner()(None, partitions, available)
    assert chosen in (available or partitions)
