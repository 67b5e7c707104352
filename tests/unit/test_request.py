"""Preparing a generation call without a model: token cuts, stops, bans and the context check."""

import pytest

from pyg_edge.chat.characters import Character
from pyg_edge.chat.prompt import build_prompt
from pyg_edge.errors import OptionsError, PromptTooLongError
from pyg_edge.generation.request import banned_sequences, generation_kwargs, prepare_request
from pyg_edge.generation.sampling import SamplingOptions

METADATA = {"context_length": 256, "eos_token_id": 50256, "prefill_chunk": 0}
AQUA = Character("Aqua", persona="A goddess of water.", greeting="Hi!")


def test_a_raw_prompt_is_cut_where_asked_and_keeps_one_token_after_it(gpt2_tokenizer):
    text = "The harbour was quiet that night, and the ships slept."
    ids = gpt2_tokenizer.encode(text)
    request = prepare_request(gpt2_tokenizer, METADATA, text, None, {}, static_tokens=5)
    assert request.ids == ids and request.static_ids == ids[:5] and not request.trim
    whole = prepare_request(gpt2_tokenizer, METADATA, text, None, {}, static_tokens=10**6)
    assert len(whole.dynamic_ids) == 1  # CTranslate2 needs one token after the prefix


def test_a_chat_prompt_caches_its_static_prefix_and_adds_its_stops(gpt2_tokenizer):
    prompt = build_prompt(AQUA, [], "Where is the pub?", gpt2_tokenizer.count, 256, 40)
    request = prepare_request(gpt2_tokenizer, METADATA, prompt, SamplingOptions(stop=("END",)),
                              {})
    prefix = gpt2_tokenizer.decode(request.static_ids)
    assert prompt.text.startswith(prefix) and prefix.strip() == prompt.static_prefix.strip()
    assert request.stops == ("END", *prompt.stop_strings) and request.trim


def test_a_chunked_model_moves_the_cut_to_one_it_reads_exactly(gpt2_tokenizer):
    text = " ".join(f"w{i}" for i in range(40))
    chunked = {**METADATA, "prefill_chunk": 32}
    short = {"max_new_tokens": 8}
    request = prepare_request(gpt2_tokenizer, chunked, text, None, short, static_tokens=10)
    assert len(request.ids) > 43 and len(request.dynamic_ids) <= 33
    assert not request.cache_prefix  # a cut moved for the chunk is not worth caching
    cached = prepare_request(gpt2_tokenizer, chunked, text, None, short, static_tokens=10,
                             cached={tuple(request.static_ids)})
    assert cached.cache_prefix  # a prefix already cached is reused


def test_prompt_and_reply_must_fit_the_context(gpt2_tokenizer):
    text = "word " * 250
    with pytest.raises(PromptTooLongError, match="lower max_new_tokens"):
        prepare_request(gpt2_tokenizer, METADATA, text, None, {"max_new_tokens": 40})


@pytest.mark.parametrize("static_tokens", [-1, 1.5, True])
def test_a_bad_static_token_count_is_an_options_error(gpt2_tokenizer, static_tokens):
    with pytest.raises(OptionsError):
        prepare_request(gpt2_tokenizer, METADATA, "hi there", None, {},
                        static_tokens=static_tokens)


def test_a_banned_string_that_holds_a_stop_is_not_suppressed(gpt2_tokenizer):
    options = SamplingOptions(banned=("<START>", "Persona:"), banned_ids=(13,))
    request = prepare_request(gpt2_tokenizer, METADATA, "hi", options, {"stop": ("<START>",)})
    banned = banned_sequences(gpt2_tokenizer, request)
    as_text = {"".join(gpt2_tokenizer.decode(gpt2_tokenizer.encode(t)) for t in seq)
               for seq in banned}
    assert gpt2_tokenizer.tokens([13]) in banned
    assert any("Persona:" in t for t in as_text) and not any("<START>" in t for t in as_text)
    kwargs = generation_kwargs(gpt2_tokenizer, request)
    assert kwargs["end_token"] == gpt2_tokenizer.tokens([50256]) and kwargs["static_prompt"] is None
