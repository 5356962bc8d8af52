"""The topics Faust declares for itself, created by the worker before Faust starts
(docs/notes/durability.md section 10): names, partitions and cleanup policy as Faust gives them."""

import pytest

from streamproc.settings import Settings
from streamproc.worker.app import build_app
from streamproc.worker.topics import faust_topics


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (
            "fold",
            {
                ("t-app-recordings-changelog", 6, "compact"),
                ("t-app-instances-changelog", 6, "compact"),
                ("t-app-__assignor-__leader", 1, None),
            },
        ),
        ("fetch", {("t-app-fetch-__assignor-__leader", 1, None)}),
    ],
)
def test_the_worker_declares_the_changelogs_and_the_leader_topic_faust_would(
    role, expected, tmp_path
):
    settings = Settings.from_env(
        {
            "STREAMPROC_APP_ID": "t-app",
            "STREAMPROC_WORKER_ROLE": role,
            "STREAMPROC_DATA_DIR": str(tmp_path),
        }
    )
    app = build_app(settings, 6)
    specs = faust_topics(app)
    assert {(s.name, s.partitions, s.config.get("cleanup.policy")) for s in specs} == expected
