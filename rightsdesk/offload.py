"""CPU-bound work off the event loop: a few threads behind a bounded queue.

The loop answers SMTP clients, ticks the scheduler and talks to the Bot API; a message that
takes seconds to parse or classify must not hold them up (a 200 KB subject once held every
other client's 250 for 74 s). Callers await `CpuPool.run(fn, ...)`; at most `workers` calls
run at once and at most `max_waiting` more wait their turn, so a flood of big mail makes its
callers wait, not the process grow.

Threads, not processes: the work shares the loaded classifier (spaCy and jieba, a second or two
to load and a few hundred MB each), and pure-Python work gives the loop the GIL every few
milliseconds. A single C call (one regular-expression scan) keeps the GIL until it returns,
so the inputs themselves are bounded too (`rightsdesk.classifying`, `intake.mail`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class CpuPool:
    def __init__(self, workers: int = 2, max_waiting: int = 32) -> None:
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cpu")
        self._slots = asyncio.Semaphore(workers + max_waiting)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` in a worker thread. A caller cancelled while it runs leaves
        it running to the end, and its slot stays taken until then: the bound holds."""
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return await asyncio.shield(future)

    def close(self) -> None:
        """Queued calls are dropped; a running one finishes in its thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)
