"""The CTranslate2 bug reproductions in docs/ctranslate2-bugs still show their bugs.

When one of these fails, the installed CTranslate2 has the fix: the workaround it
motivates (see the README there) can be revisited.
"""

import json
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


def test_a_chunked_prompt_pass_over_a_batch_differs_from_each_prompt_alone(converted):
    """README section 3: with a decoder-level sliding_window (pyg-edge's prefill chunk), a
    batch of prompts longer than the chunk gives some rows other tokens than the same prompt
    alone, in float32 too; a one-pass model (prefill_chunk=0) gives the same."""
    from support.exactness import generator, greedy
    from support.paths import reference

    name = "neo_w16_safetensors_f32"
    prompt = reference(name)["prompt"].tolist()
    rows = {}
    for chunk in (None, 0):
        folder = converted(name, "float32", prefill_chunk=chunk)
        model = generator(folder)
        vocabulary = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
        alone = greedy(model, folder, prompt, 12)
        batch = model.generate_batch([[vocabulary[i] for i in prompt]] * 4, max_length=12,
                                     min_length=12, sampling_topk=1,
                                     include_prompt_in_result=False)
        rows[chunk] = [r.sequences_ids[0] == alone for r in batch]
    assert rows[0] == [True] * 4  # control: one pass
    assert not all(rows[None]), rows  # the bug: a chunked pass over a batch
