"""schemas/asyncapi.yaml agrees with the JSON Schemas and the default topic names."""

import yaml

from streamproc.settings import Settings

from helpers import REPO

SCHEMAS = REPO / "schemas"
DOCUMENT = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())


def _local_refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _local_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _local_refs(item)


def test_every_reference_resolves():
    for ref in _local_refs(DOCUMENT):
        if ref.startswith("#/"):
            target = DOCUMENT
            for part in ref[2:].split("/"):
                target = target[part]
        else:
            assert (SCHEMAS / ref).resolve().is_file(), ref


def test_every_derived_and_raw_event_schema_is_documented():
    payloads = {
        (SCHEMAS / message["payload"]["$ref"]).resolve()
        for message in DOCUMENT["components"]["messages"].values()
    }
    expected = {
        p.resolve() for p in (SCHEMAS / "derived").glob("*.json") if p.name != "common.json"
    }
    expected |= {
        p.resolve()
        for p in (SCHEMAS / "raw").rglob("*.json")
        if p.stem not in ("envelope", "recording", "verification", "testEvent")
    }
    assert payloads == expected


def test_channel_addresses_are_the_default_topics():
    defaults = Settings()
    addresses = {name: channel["address"] for name, channel in DOCUMENT["channels"].items()}
    assert addresses == {
        "raw": defaults.raw_topic,
        "state": defaults.state_topic,
        "lifecycle": defaults.lifecycle_topic,
        "fetchRequests": defaults.fetch_topic,
        "downloads": defaults.downloads_topic,
        "deadLetters": defaults.dlq_topic,
    }
    assert DOCUMENT["asyncapi"].startswith("3.")


def test_every_operation_names_a_channel():
    for operation in DOCUMENT["operations"].values():
        assert operation["action"] in ("send", "receive")
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert channel in DOCUMENT["channels"]
