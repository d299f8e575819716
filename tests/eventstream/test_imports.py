"""The stream process imports `shared` only: neither the Flask app nor the workers."""
from __future__ import annotations

import subprocess
import sys

from shared.settings import PROJECT_ROOT


def test_the_stream_process_loads_neither_web_nor_worker():
    probe = ("import sys, eventstream.__main__; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'web', 'worker', 'flask', 'celery'}))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
