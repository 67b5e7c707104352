"""Stops are matched in one pass per character, however many a request sends (issue 37,
finding 1): the same replies as the scan per stop string, at a cost that does not grow
with the number of stops."""

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from pyg_edge.generation.stopping import StopFilter


class ScanPerStop:
    """The earlier filter: every stop searched for in the pending text on every push."""

    def __init__(self, stops, trim=True):
        self.stops, self.pending, self.started, self.trim = [s for s in stops if s], "", \
            not trim, trim
        self.stopped = False

    def strip(self, text):
        return text.rstrip() if self.trim else text

    def push(self, text):
        if self.stopped:
            return ""
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        self.pending += text
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self.pending = self.strip(self.pending[:cut]), ""
            return out
        longest = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.pending)), longest, -1):
                if self.pending.endswith(stop[:n]):
                    longest = n
                    break
        out = self.strip(self.pending[:len(self.pending) - longest])
        self.pending = self.pending[len(out):]
        return out

    def finish(self):
        out, self.pending = self.strip(self.pending), ""
        return out


def run(kind, stops, pieces, trim):
    stop_filter, shown = kind(stops, trim=trim), []
    for piece in pieces:
        shown.append(stop_filter.push(piece))
        if stop_filter.stopped:
            break
    if not stop_filter.stopped:
        shown.append(stop_filter.finish())
    return shown, stop_filter.stopped


TEXT = st.text(alphabet="ab \nYu:", max_size=6)


@settings(max_examples=600, deadline=None)
@given(stops=st.lists(TEXT, max_size=5), pieces=st.lists(TEXT, max_size=8),
       trim=st.booleans())
def test_one_pass_matching_shows_what_a_scan_per_stop_shows(stops, pieces, trim):
    assert run(StopFilter, stops, pieces, trim) == run(ScanPerStop, stops, pieces, trim)


def test_a_stop_that_begins_in_held_back_text_cuts_there():
    stop_filter = StopFilter(["\nYou:", "ou"], trim=False)
    assert stop_filter.push("Hi\nY") == "Hi"
    assert stop_filter.push("ou") == "\nY" and stop_filter.stopped  # "ou" is whole first


def test_many_stops_cost_no_more_per_token_than_one():
    def seconds(stops):
        stop_filter = StopFilter(stops)
        started = time.perf_counter()
        for _ in range(2000):
            stop_filter.push(" word")
        return time.perf_counter() - started

    many = [f"never-{i}-" + "x" * 10 for i in range(20_000)]
    assert seconds(many) < 5 * seconds(["never"]) + 0.05


def test_bans_against_stops_cost_their_text_not_their_product(gpt2_tokenizer):
    from pyg_edge.generation.request import Request, banned_sequences
    from pyg_edge.generation.sampling import SamplingOptions

    stops = tuple(f"s{i:06d}" for i in range(40_000))
    bans = tuple(f"b{i:05d}" for i in range(2_000)) + ("xs000123x",)  # the last holds a stop
    request = Request(SamplingOptions(banned=bans), [1], [], [1], stops, False, 50256)
    started = time.perf_counter()
    banned = banned_sequences(gpt2_tokenizer, request)
    assert time.perf_counter() - started < 2.0  # pair by pair: 80 million checks
    assert len(banned) == 2 * 2_000  # every ban but the one a stop ends first, two ways
