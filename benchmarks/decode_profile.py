"""One greedy generation of 128 tokens after an N-token prompt, for a decode profile:

    perf record -e cpu-clock -g -D <ms past load and prompt> -- python decode_profile.py N

The delay leaves the load and the prompt pass out of the recording; the script prints the
first-token time to set it. Uses work/neo27-st-int8-chunk1024 (bench_common.ensure_model).
"""

import sys

from bench_common import CHUNKED_MODEL as MODEL
from bench_common import prompt_of as prompt_text
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.sampling import SamplingOptions

NEW_TOKENS = 128

if __name__ == "__main__":
    count = int(sys.argv[1])
    model = PygModel(MODEL, device="cpu")
    model.generate(prompt_text(count), SamplingOptions(
        top_k=1, repetition_penalty=1.0, banned=(), max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS))
    stats = model.last_generation
    speed = (stats.new_tokens - 1) / (stats.seconds - stats.first_token_seconds)
    print(f"prompt {count}: first token {stats.first_token_seconds:.2f} s, "
          f"decode {speed:.2f} tokens/s")
