"""Logging is quiet by default, complete at DEBUG, and JSON on request; progress suits its sink."""

from __future__ import annotations

import io
import logging

import faust
import orjson
import pytest

from streamproc.logs import LIBRARIES, configure_logging, logging_config
from streamproc.ops.progress import PlainProgress, progress_bar
from streamproc.settings import Settings
from streamproc.worker.run import faust_worker


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    configure_logging("WARNING")


def test_libraries_are_quiet_unless_debug():
    configure_logging("INFO")
    assert logging.getLogger("streamproc.worker").getEffectiveLevel() == logging.INFO
    for name in LIBRARIES:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    assert not logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.INFO)
    configure_logging("DEBUG")
    assert logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)


def test_json_lines_carry_level_logger_and_message(capsys):
    configure_logging("INFO", "json")
    logging.getLogger("streamproc.test").info("folded %d records", 3)
    logging.getLogger("aiokafka").info("a library line that stays out")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    record = orjson.loads(lines[0])
    assert (record["level"], record["logger"], record["message"]) == (
        "INFO",
        "streamproc.test",
        "folded 3 records",
    )
    assert "time" in record


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="text, json"):
        logging_config("INFO", "xml")


def test_plain_progress_prints_lines_not_carriage_returns():
    sink = io.StringIO()
    bar = progress_bar(10, "replay", unit="rec", file=sink, interval_s=0)
    assert isinstance(bar, PlainProgress)
    for _ in range(10):
        bar.update(1)
    bar.close()
    lines = sink.getvalue().splitlines()
    assert "\r" not in sink.getvalue()
    assert lines[0].startswith("replay: 1/10 rec (")
    assert lines[-1].startswith("replay: 10/10 rec (")


def test_a_disabled_bar_prints_nothing():
    sink = io.StringIO()
    bar = progress_bar(5, "replay", enabled=False, file=sink)
    bar.update(5)
    bar.close()
    assert sink.getvalue() == ""


@pytest.mark.parametrize("level", ["WARNING", "ERROR"])
def test_a_quiet_worker_keeps_debug_records_off(level):
    """Faust's own worker turns the root logger to DEBUG at WARNING and above (its terminal
    spinner spins on every record), so each ``log.debug`` builds a record; ours does not."""
    app = faust.App("logs-test")
    settings = Settings.from_env({"STREAMPROC_LOG_LEVEL": level})
    number = logging.getLevelNamesMapping()[level]
    configure_logging(level)
    faust.Worker(app, loglevel=level).on_setup_root_logger(logging.root, number)
    assert logging.root.level == logging.DEBUG  # the Faust behaviour this works around
    configure_logging(level)
    faust_worker(app, settings).on_setup_root_logger(logging.root, number)
    assert not logging.getLogger("streamproc.worker.pipeline").isEnabledFor(logging.DEBUG)


def test_an_error_aiokafka_retries_by_itself_is_not_printed(capsys):
    """aiokafka logs a retriable coordinator lookup failure at ERROR, then retries it."""
    from aiokafka.errors import GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError

    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    configure_logging("INFO")
    coordinator.error("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
    assert capsys.readouterr().err == ""
    coordinator.error("Group Coordinator Request failed: %s", GroupAuthorizationFailedError())
    assert "GroupAuthorizationFailedError" in capsys.readouterr().err  # not retriable: shown
    coordinator.warning("Marking the coordinator dead (node %s)for group %s.", 1, "g")
    assert capsys.readouterr().err == ""  # a lookup again follows
    coordinator.warning("Heartbeat failed for group %s because it is rebalancing", "g")
    assert "Heartbeat failed" in capsys.readouterr().err
    configure_logging("DEBUG")
    coordinator.error("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
    assert "GroupCoordinatorNotAvailableError" in capsys.readouterr().err
    coordinator.warning("Marking the coordinator dead (node %s)for group %s.", 1, "g")
    assert "Marking the coordinator dead" in capsys.readouterr().err
