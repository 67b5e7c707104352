"""The model's turn queue: first come, first served across threads; a cancelled waiter leaves."""

import threading
import time

from pyg_edge.generation.turns import POLL_S, TurnQueue


def test_turns_are_given_in_arrival_order():
    turns, order = TurnQueue(), []
    assert turns.acquire()  # held while the others line up

    def wait_turn(i):
        turns.acquire()
        order.append(i)
        time.sleep(0.01)
        turns.release()

    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=wait_turn, args=(i,)))
        threads[-1].start()
        while turns.waiting < i + 1:  # each one queued before the next starts
            time.sleep(0.001)
    turns.release()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_cancelled_waiter_leaves_the_queue_without_the_turn():
    turns, cancel = TurnQueue(), threading.Event()
    turns.acquire()
    result = {}
    waiter = threading.Thread(target=lambda: result.update(got=turns.acquire(cancel)))
    waiter.start()
    while turns.waiting < 1:
        time.sleep(0.001)
    started = time.monotonic()
    cancel.set()
    waiter.join(5)
    assert result["got"] is False and time.monotonic() - started < 5 * POLL_S
    assert turns.waiting == 0 and turns.busy  # the holder kept its turn
    turns.release()
    assert turns.acquire() and turns.busy


def test_cancel_all_reaches_the_holder_and_every_waiter():
    turns = TurnQueue()
    holder, waiting = threading.Event(), threading.Event()
    turns.acquire(holder)
    thread = threading.Thread(target=turns.acquire, args=(waiting,))
    thread.start()
    while turns.waiting < 1:
        time.sleep(0.001)
    turns.cancel_all()
    thread.join(5)
    assert holder.is_set() and waiting.is_set() and turns.waiting == 0
