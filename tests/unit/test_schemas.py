"""The fast compiled validators and jsonschema agree on every schema we ship."""

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.core import schemas

from helpers import EXAMPLES

RAW = sorted(str(p.relative_to(p.parents[2])) for p in (EXAMPLES.parent / "raw").rglob("*.json"))
names = st.sampled_from([*RAW, "canonical/recording-event.json"])
leaf = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.sampled_from(
        ["", "x", "recording.started", "recordingEnded", "finished", "COMPLETE", "cloud"]
    )
)
documents = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(
            st.sampled_from(
                [
                    "version",
                    "type",
                    "id",
                    "payload",
                    "event_ts",
                    "recording_id",
                    "status",
                    "event",
                    "data",
                    "creationDate",
                    "recordingId",
                    "roomId",
                    "test",
                    "s3_key",
                    "tracks",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=15,
)


@settings(max_examples=400, deadline=None)
@given(name=names, document=documents)
def test_fast_and_reference_validators_agree(name, document):
    reference_valid = schemas.validator(name).is_valid(document)
    assert (schemas.first_error(name, document) is None) == reference_valid


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.json")), ids=lambda p: p.name)
def test_examples_are_valid_for_both(path):
    document = orjson.loads(path.read_bytes())
    provider, name = path.parent.name, path.stem.removesuffix(".raw-tracks")
    assert schemas.validator(f"raw/{provider}/{name}.json").is_valid(document)
    assert schemas.first_error(f"raw/{provider}/{name}.json", document) is None
