"""PrefixCache: which prompt prefixes CTranslate2 keeps, within a memory budget."""

from pyg_edge.generation.prefix_cache import PrefixCache, bytes_per_token

ROBIN = tuple(range(100, 140))  # a card's prefix, 40 tokens
AQUA = tuple(range(500, 540))


def cache(budget_tokens: int):
    reloads = []
    return PrefixCache(lambda: reloads.append(1), bytes_per_token=10,
                       budget=budget_tokens * 10), reloads


def test_two_chats_keep_their_prefixes_side_by_side_within_the_budget():
    prefixes, reloads = cache(200)
    for _ in range(3):
        prefixes.remember(ROBIN)
        prefixes.remember(AQUA)
    assert prefixes.prefixes == {ROBIN, AQUA} and reloads == []
    assert prefixes.used_bytes == 80 * 10


def test_a_prefix_past_the_budget_empties_the_cache_by_a_reload():
    prefixes, reloads = cache(100)
    prefixes.remember(ROBIN)
    prefixes.remember(AQUA)
    prefixes.remember(tuple(range(900, 930)))  # 40 + 40 + 30 > 100
    assert reloads == [1] and prefixes.prefixes == {tuple(range(900, 930))}


def test_one_prefix_is_kept_whatever_its_size():
    prefixes, reloads = cache(10)
    prefixes.remember(ROBIN)
    assert prefixes.prefixes == {ROBIN} and reloads == []


def test_a_chat_that_moved_its_block_on_reloads_as_one_cached_prefix_did():
    prefixes, reloads = cache(10_000)
    prefixes.remember(ROBIN)
    prefixes.remember(ROBIN + (1, 2, 3))  # the same card, a frozen block after it
    assert reloads == [1] and prefixes.prefixes == {ROBIN + (1, 2, 3)}


def test_an_outdated_prefix_stays_while_the_live_ones_hold_more():
    prefixes, reloads = cache(10_000)
    long_aqua = AQUA + tuple(range(60))
    prefixes.remember(ROBIN)
    prefixes.remember(long_aqua)
    prefixes.remember(ROBIN + (7,))  # outdates 40 tokens; 100 live
    assert reloads == [] and len(prefixes.prefixes) == 3
    prefixes.remember(ROBIN + (7, 8))  # outdates 81 tokens; 100 live
    prefixes.remember(ROBIN + (7, 8, 9))  # outdates 123 > 100: reload
    assert reloads == [1] and prefixes.prefixes == {ROBIN + (7, 8, 9)}


def test_empty_reloads_only_when_something_is_cached():
    prefixes, reloads = cache(100)
    prefixes.empty()
    assert reloads == []
    prefixes.remember(ROBIN)
    prefixes.empty()
    assert reloads == [1] and prefixes.prefixes == frozenset()


def test_bytes_per_token_is_keys_and_values_of_every_layer_in_float32():
    metadata = {"source": {"config": {"num_layers": 32, "hidden_size": 2560}}}
    assert bytes_per_token(metadata) == 2 * 32 * 2560 * 4  # 0.66 MB at the 2.7B shape
    assert bytes_per_token({}) == 0
