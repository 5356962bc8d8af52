import subprocess
import sys

import pytest

from streamproc.settings import Settings, SettingsError


def test_defaults_run_locally():
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.raw_topic == "recordings.raw"
    assert settings.timestamp_tolerance_s == 300
    assert settings.max_body_bytes == 1024 * 1024


def test_secrets_parse_with_and_without_key_ids():
    settings = Settings.from_env(
        {
            "STREAMPROC_DAILY_SECRETS": "new:c2VjcmV0,b2xk",
            "STREAMPROC_OPENVIDU_SECRETS": "api-key-1",
        }
    )
    assert [(s.key_id, s.key) for s in settings.daily_secrets] == [
        ("new", b"secret"),
        ("k1", b"old"),
    ]
    assert [(s.key_id, s.key) for s in settings.openvidu_secrets] == [("k0", b"api-key-1")]
    assert "secret" not in repr(settings.daily_secrets)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("STREAMPROC_EDGE_PORT", "eighty", "STREAMPROC_EDGE_PORT='eighty' is not an integer"),
        ("STREAMPROC_EDGE_PORT", "70000", "out of range"),
        ("STREAMPROC_TIMESTAMP_TOLERANCE_S", "-5", "out of range"),
        ("STREAMPROC_DAILY_SECRETS", "main:not base64!", "secret 'main' is not valid base64"),
        ("STREAMPROC_OPENVIDU_SECRETS", "a,,b", "entry 2 is empty"),
        ("STREAMPROC_WORKER_ROLE", "download", "is not one of all, fold, fetch"),
        ("STREAMPROC_IDEMPOTENCE", "maybe", "is not one of auto, on, off"),
        ("STREAMPROC_TOPIC_MIN_INSYNC_REPLICAS", "2", "is more than .*REPLICATION_FACTOR=1"),
    ],
)
def test_bad_values_name_the_variable(variable, value, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({variable: value})


def test_edge_with_a_bad_value_exits_with_one_readable_line():
    result = subprocess.run(
        [sys.executable, "-m", "streamproc", "edge"],
        env={"STREAMPROC_MAX_BODY_BYTES": "lots", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "streamproc: configuration error: STREAMPROC_MAX_BODY_BYTES='lots' is not an integer"
    ]


def test_replication_settings_reach_the_topics_created():
    from streamproc.kafka.topics import Replication

    settings = Settings.from_env(
        {"STREAMPROC_TOPIC_REPLICATION_FACTOR": "3", "STREAMPROC_TOPIC_MIN_INSYNC_REPLICAS": "2"}
    )
    assert Replication.of(settings) == Replication(3, 2)
    assert Replication.of(settings).config() == {"min.insync.replicas": "2"}
    assert Replication.of(Settings()).config() == {}
