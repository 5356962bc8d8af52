"""Where Apache Kafka cannot run, the reason is named (the tests skip with it, CI fails)."""

from __future__ import annotations

import pytest

from streamproc.local import apache_kafka
from streamproc.local.apache_kafka import KafkaUnavailable, jars_folder


def test_without_java_or_maven_kafka_is_unavailable_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMPROC_KAFKA_JARS", str(tmp_path / "jars"))
    monkeypatch.setattr(apache_kafka.shutil, "which", lambda tool: None)
    with pytest.raises(KafkaUnavailable, match="java and mvn not found"):
        jars_folder()


def test_resolved_jars_need_only_java(monkeypatch, tmp_path):
    folder = tmp_path / "jars"
    folder.mkdir()
    (folder / ".resolved").write_text(apache_kafka.POM.read_text())
    monkeypatch.setenv("STREAMPROC_KAFKA_JARS", str(folder))
    monkeypatch.setattr(
        apache_kafka.shutil, "which", lambda tool: "/usr/bin/java" if tool == "java" else None
    )
    assert jars_folder() == folder
    monkeypatch.setattr(apache_kafka.shutil, "which", lambda tool: None)
    with pytest.raises(KafkaUnavailable, match="java not found"):
        jars_folder()
