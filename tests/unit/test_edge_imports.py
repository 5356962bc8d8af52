import subprocess
import sys


def test_the_edge_process_never_imports_aiohttp():
    code = (
        "import sys, streamproc.cli, streamproc.edge.server, streamproc.edge.app;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'faust')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
