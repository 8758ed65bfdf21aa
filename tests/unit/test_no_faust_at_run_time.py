"""faust-streaming is in the ``tools`` extra only: nothing in stream_app/ may import it."""

import subprocess
import sys


def test_the_worker_and_cli_import_no_faust() -> None:
    code = (
        "import sys, stream_app.cli, stream_app.runner, stream_app.agents.aggregation, "
        "stream_app.generator; assert not [m for m in sys.modules if m.split('.')[0] in "
        "('faust', 'mode')], sorted(m for m in sys.modules if 'faust' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
