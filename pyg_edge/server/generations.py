"""The server's record of its generations, for KoboldCpp's abort, generate/check and perf.

The library queues and runs them (PygModel: one at a time, first come, first served); the
server only remembers which client's key each one carries, and the latest one's text.
"""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pyg_edge.generation.stats import GenerationStats


@dataclass
class GenerationRecord:
    """One generation (a CompletionStream) as the KoboldCpp routes report it.

    Attributes:
      stream: The library's CompletionStream.
      key: The client's genkey ("" when it sent none).
      seed: The seed it asked for, or None.
      pieces: The text generated so far.
      ended_at: time.time() when it ended (0 while it runs).
      kobold: Started through a KoboldAI/KoboldCpp route: only those are shown by
        generate/check (an OpenAI or web chat reply is nobody else's to read).
    """

    stream: object = None
    key: str = ""
    seed: int | None = None
    kobold: bool = False
    pieces: list = field(default_factory=list)
    ended_at: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def stats(self) -> GenerationStats:
        return self.stream.stats if self.stream is not None else GenerationStats()

    @property
    def running(self) -> bool:
        return self.stream is not None and self.stream.state == "running"


class Generations:
    """The generations this server started: running, waiting, and the latest one."""

    def __init__(self):
        self.started_at = time.time()
        self.generations = 0  # finished generations, for /api/extra/perf
        self._active = []  # records still queued or running, in arrival order
        self._last = GenerationRecord()

    async def run(self, stream, key: str = "", seed=None, kobold: bool = False) -> AsyncIterator:
        """Yields stream's chunks, recording its text for generate/check."""
        record = GenerationRecord(stream, key, seed, kobold=kobold)
        self._active.append(record)
        try:
            async for chunk in stream:
                if chunk.text:
                    record.pieces.append(chunk.text)
                yield chunk
        finally:
            stream.close()
            self._active.remove(record)
            record.ended_at = time.time()
            self.generations += 1
            self._last = record

    @property
    def last(self) -> GenerationRecord:
        """The running generation, else the latest to end."""
        running = [r for r in self._active if r.running]
        return running[-1] if running else self._last

    @property
    def waiting(self) -> int:
        return sum(1 for r in self._active if r.stream.state in ("new", "queued"))

    def abort(self, key: str = "") -> bool:
        """KoboldCpp's abort: the generations started with key; without one, the running
        generation only if it has no key either and nobody waits (else it may be another
        client's).

        Returns:
          Whether a generation was cancelled.
        """
        if key:
            targets = [r for r in self._active if r.key == key]
        elif self.waiting:
            targets = []
        else:
            targets = [r for r in self._active if r.running and not r.key]
        for record in targets:
            record.stream.cancel()
        return bool(targets)

    def text_for(self, key: str = "") -> str:
        """KoboldCpp's generate/check: the text so far of the current or latest KoboldAI
        generation started with key; without one, of a keyless one while nobody waits."""
        record = self.last
        if not record.kobold or record.key != key or (not key and self.waiting):
            return ""
        return record.text

    def close(self) -> None:
        for record in list(self._active):
            record.stream.cancel()
