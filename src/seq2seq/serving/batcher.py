"""Dynamic batching: concurrent requests become one decoding batch, decoded off the event loop.

Each request is a `Job` (its texts, a search and whether it wants attention). `Batcher.run` takes the oldest job,
waits up to ``max_wait_s`` for more, and decodes together every waiting job with the same decoding settings, up to
``max_batch_size`` texts; jobs with other settings wait for the next batch. Decoding runs in one worker thread, so
the event loop goes on accepting, checking and answering requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("seq2seq.serving")


class Busy(Exception):
    """The queue is full: the server has more texts waiting than it takes."""


@dataclass
class Job:
    """One request's texts waiting to be decoded with ``search``; ``future`` gets its translations."""

    texts: list[str]
    key: tuple  # jobs with equal keys share a batch
    search: Any
    attention: bool
    future: asyncio.Future
    queued: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class BatchingSettings:
    """How the server batches: at most ``max_batch_size`` texts a batch, a first job waits at most ``max_wait_s``
    for company, and at most ``max_queue`` texts wait (more get a 503)."""

    max_batch_size: int = 64
    max_wait_s: float = 0.01
    max_queue: int = 1024


class Batcher:
    """A queue of jobs and the task that decodes them in batches with ``translate(texts, search, attention)``."""

    def __init__(self, translate: Callable[[list[str], Any, bool], list], settings: BatchingSettings) -> None:
        self.translate = translate
        self.settings = settings
        self.jobs: list[Job] = []
        self.queued_texts = 0
        self.batches = 0  # decoded so far (for /health and the tests)
        self.texts = 0
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")

    async def start(self) -> None:
        """Start decoding (call inside the running event loop)."""
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        """Stop after the batch in progress; jobs still queued get `asyncio.CancelledError`."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for job in self.jobs:
            job.future.cancel()
        self.jobs.clear()
        self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str], key: tuple, search: Any, attention: bool) -> list:
        """Queue ``texts`` and wait for their translations (cancel the wait to drop them if not started yet).

        Raises:
            Busy: the queue already holds ``max_queue`` texts.
        """
        if self.queued_texts + len(texts) > self.settings.max_queue:
            raise Busy(f"{self.queued_texts} texts are waiting")
        job = Job(texts, key, search, attention, asyncio.get_running_loop().create_future())
        self.jobs.append(job)
        self.queued_texts += len(texts)
        self._arrived.set()
        return await job.future

    async def run(self) -> None:
        """Decode batches for as long as the server runs."""
        while True:
            await self._arrived.wait()
            self._drop_abandoned()
            if not self.jobs:
                self._arrived.clear()
                continue
            # wait for company, unless a full batch is already there
            deadline = self.jobs[0].queued + self.settings.max_wait_s
            while self.queued_texts < self.settings.max_batch_size and (delay := deadline - time.monotonic()) > 0:
                await asyncio.sleep(min(delay, 0.002))
            batch = self._take_batch()
            if batch:
                await self._decode(batch)

    def _drop_abandoned(self) -> None:
        """Forget jobs whose client stopped waiting (timed out or disconnected) before decoding began."""
        kept = [job for job in self.jobs if not job.future.done()]
        self.queued_texts -= sum(len(job.texts) for job in self.jobs if job.future.done())
        self.jobs = kept

    def _take_batch(self) -> list[Job]:
        """The oldest job and, in arrival order, the jobs with its settings that fit beside it."""
        self._drop_abandoned()
        if not self.jobs:
            return []
        key, size, batch = self.jobs[0].key, 0, []
        for job in self.jobs:
            if job.key == key and (not batch or size + len(job.texts) <= self.settings.max_batch_size):
                batch.append(job)
                size += len(job.texts)
        taken = {id(job) for job in batch}
        self.jobs = [job for job in self.jobs if id(job) not in taken]
        self.queued_texts -= size
        return batch

    async def _decode(self, batch: Sequence[Job]) -> None:
        texts = [text for job in batch for text in job.texts]
        attention = any(job.attention for job in batch)
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self.translate, texts, batch[0].search, attention)
        except Exception as error:  # a bug, not a bad request: the requests get a 500, the server goes on
            log.exception("decoding a batch of %d texts failed", len(texts))
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        self.batches += 1
        self.texts += len(texts)
        start = 0
        for job in batch:
            if not job.future.done():
                job.future.set_result(results[start : start + len(job.texts)])
            start += len(job.texts)
