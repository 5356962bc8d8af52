"""Fault injection for ``tests/integration/test_agent_crash.py``: a worker started with this
directory on PYTHONPATH and ``STREAMPROC_TEST_CRASH_KEY`` set raises in the fold agent's
batch flush (where Faust's ``PartitionsMismatch`` once escaped, docs/notes/durability.md section
10) when that recording's table write is in the batch. Not part of the product."""

import os

_KEY = os.environ.get("STREAMPROC_TEST_CRASH_KEY", "").encode()

if _KEY:
    from streamproc.worker.batch_table import BatchTable

    _flush = BatchTable.flush

    def _failing_flush(self: BatchTable) -> None:
        if _KEY in self.pending:
            raise RuntimeError(f"injected fault: the table write of {_KEY!r} failed")
        _flush(self)

    BatchTable.flush = _failing_flush
