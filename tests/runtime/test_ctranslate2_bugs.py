"""The CTranslate2 bug reproductions in docs/ctranslate2-bugs still show their bugs.

When one of these fails, the installed CTranslate2 has the fix: the workaround it
motivates (see the README there) can be revisited.
"""

import subprocess
import sys

import pytest

from support.paths import REPO

BUGS = REPO / "docs" / "ctranslate2-bugs"


@pytest.mark.parametrize("script, symptom", [
    ("t5_bias_offset_under_cache.py", "BUG: a multi-token pass with a cache"),
    ("softmax_sliding_window_static_prompt.py", "BUG: the child"),
])
def test_reproduction_shows_the_bug(script, symptom):
    run = subprocess.run([sys.executable, str(BUGS / script)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert symptom in run.stdout
    assert "control" in run.stdout or "static_prompt of 4: child exit status 0" in run.stdout
