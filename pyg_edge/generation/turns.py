"""Turns on one model: one generation at a time, first come, first served.

Every generation runs in a thread of its own (pyg_edge.generation.streams), which waits here
for its turn. A waiting call whose cancel Event is set leaves the queue within POLL_S.
"""

import threading
from collections import deque

POLL_S = 0.05  # how often a waiter looks at its cancel Event


class TurnQueue:
    """A fair lock: turns are given in the order acquire() was called."""

    def __init__(self):
        self._changed = threading.Condition()
        self._waiting = deque()  # (ticket, cancel Event or None), in arrival order
        self._holder = None

    def acquire(self, cancel: threading.Event | None = None) -> bool:
        """Waits for this caller's turn; False if cancel was set first (no turn taken)."""
        ticket = (object(), cancel)
        with self._changed:
            self._waiting.append(ticket)
            try:
                while self._holder is not None or self._waiting[0] is not ticket:
                    if cancel is not None and cancel.is_set():
                        return False
                    self._changed.wait(POLL_S)
                self._holder = ticket
                return True
            finally:
                self._waiting.remove(ticket)
                self._changed.notify_all()

    def release(self) -> None:
        with self._changed:
            self._holder = None
            self._changed.notify_all()

    @property
    def waiting(self) -> int:
        """Calls waiting for their turn."""
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        """Whether a call holds the turn now."""
        return self._holder is not None

    def cancel_all(self) -> None:
        """Sets the cancel Event of every waiting call and of the one holding the turn."""
        with self._changed:
            for _, cancel in [*self._waiting, *([self._holder] if self._holder else [])]:
                if cancel is not None:
                    cancel.set()
            self._changed.notify_all()
