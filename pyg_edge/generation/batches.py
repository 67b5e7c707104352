"""Waiting for an asynchronous generate_batch from another thread (n replies, token
probabilities: both read CTranslate2's steps through its callback)."""

import queue

BATCH_DONE = object()  # what wait_for_batch puts last


def wait_for_batch(batch, out: queue.Queue) -> None:
    """Waits for an asynchronous generate_batch; puts its error, if any, then BATCH_DONE on
    out (for a reader in another thread, which raises the error)."""
    try:
        for async_result in batch:
            async_result.result()
    except Exception as error:  # noqa: BLE001  raised to the reader
        out.put(error)
    out.put(BATCH_DONE)
