"""`streamproc up` prints the development secrets it generated, never ones it was given."""

from __future__ import annotations

from streamproc.local.stack import development_secrets, print_banner
from streamproc.settings import Settings

GIVEN_DAILY = "ZGFpbHktc2VjcmV0LWdpdmVuLWJ5LXRoZS11c2Vy"


def test_the_banner_shows_generated_secrets_only(capsys):
    env = {"STREAMPROC_DAILY_SECRETS": GIVEN_DAILY, "STREAMPROC_KAFKA_BOOTSTRAP": "k:9092"}
    settings = Settings.from_env(env)
    generated = development_secrets(settings)
    assert list(generated) == ["STREAMPROC_OPENVIDU_SECRETS"]  # Daily's was given
    print_banner(settings, {**env, **generated}, generated)
    printed = capsys.readouterr().out
    assert GIVEN_DAILY not in printed
    assert f"STREAMPROC_OPENVIDU_SECRETS={generated['STREAMPROC_OPENVIDU_SECRETS']}" in printed
