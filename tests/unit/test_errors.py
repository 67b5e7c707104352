"""Everything an app can catch from the library is a PygEdgeError, with a one-line message."""

import pytest

from pyg_edge import errors
from pyg_edge.chat.completions import Completions
from pyg_edge.chat.messages import chat_parts
from pyg_edge.generation.replies import check_reply_count
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge_convert import ConversionError, convert_checkpoint


def test_every_library_error_is_a_pyg_edge_error():
    classes = [getattr(errors, name) for name in dir(errors)
               if isinstance(getattr(errors, name), type)
               and issubclass(getattr(errors, name), Exception)]
    assert len(classes) >= 10
    assert all(issubclass(c, errors.PygEdgeError) for c in classes)


def test_a_bad_option_is_an_options_error_and_still_a_value_error():
    with pytest.raises(errors.OptionsError, match="top_p") as caught:
        SamplingOptions(top_p=2)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(errors.UnknownOptionError, match="expected one of") as unknown:
        SamplingOptions().with_overrides(temprature=1)
    assert isinstance(unknown.value, TypeError)
    with pytest.raises(errors.OptionsError):
        check_reply_count(0)


def test_a_failed_conversion_is_a_pyg_edge_error(tmp_path):
    assert issubclass(ConversionError, errors.PygEdgeError)
    with pytest.raises(errors.PygEdgeError, match="\\S") as caught:
        convert_checkpoint(str(tmp_path / "missing"), str(tmp_path / "out"))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("messages", [None, [], [{"role": "wizard", "content": "hi"}],
                                      [{"role": "user"}]])
def test_malformed_messages_are_an_invalid_request_error(messages):
    with pytest.raises(errors.InvalidRequestError, match="messages"):
        chat_parts(messages)


def test_completions_refuse_malformed_messages_before_any_generation(gpt2_tokenizer):
    class NoModel:  # Completions reads these, and must not generate
        context_length, prefill_chunk, tokenizer = 256, 0, gpt2_tokenizer

    with pytest.raises(errors.InvalidRequestError):
        Completions(NoModel(), reuse_prefixes=False, smart_context=0).create_chat_completion([])
