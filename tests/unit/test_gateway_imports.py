"""The gateway and the CLI that starts it load without torch or transformers."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO


def test_the_gateway_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from services.gateway.app import create_app\n"
        "from services.cli import cli\n"
        "create_app(configure_logs=False)\n"
        "loaded = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "print('clean')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"
