"""Where chunks are tokenised: a thread pool, or processes on many-core GPU hosts.

The Rust tokenizer releases the GIL, so threads usually suffice; at GPU speeds the Python
glue around it does not, and a process pool takes that off the worker's interpreter.
Processes cannot share the model's tokenizer object, so they are handed its JSON and a
key (see ``encoding.tokenizer_key``): a chunk tokenised by a process records the key it
used, and the forward thread re-tokenises it if the model has changed meanwhile.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context

import numpy as np

from models.sentiment import SentimentModel
from services.classify.encoding import process_encode, process_init
from services.classify.forward import Chunk
from services.classify.model_tools import ModelTools
from services.classify.model_watch import ModelProvider

Tokenised = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # ids, lengths, truncated, cache hits


class Tokenizers:
    def __init__(self, provider: ModelProvider, tools: ModelTools, threads: int,
                 processes: int, cache_size: int) -> None:
        self.provider = provider
        self.tools = tools
        self.threads = max(1, threads)
        self.processes = max(0, processes)
        self.cache_size = cache_size
        self._threads: ThreadPoolExecutor | None = None
        self._procs: ProcessPoolExecutor | None = None
        self._proc_key = ""

    async def start(self, loop: asyncio.AbstractEventLoop, model: SentimentModel) -> None:
        self._threads = ThreadPoolExecutor(self.threads, thread_name_prefix="yuqing-tok")
        if self.processes:
            key = self.tools.get(model, with_runner=False)[0]
            self._ensure_processes(model, key)
            await asyncio.gather(*(  # spawn them now, not on the first real chunk
                loop.run_in_executor(self._procs, process_encode, key, ["warm-up"])
                for _ in range(self.processes)))

    def submit(self, loop: asyncio.AbstractEventLoop, chunk: Chunk) -> asyncio.Future[Tokenised]:
        """Tokenise ``chunk`` off the loop; sets ``chunk.tok_key`` to the tokenisation used."""
        if self.processes:
            model = self.provider.current()
            key = self.tools.key_of(model)
            if key is not None:  # known tokenisation: ship the texts to a process
                self._ensure_processes(model, key)
                chunk.tok_key = key
                return loop.run_in_executor(self._procs, process_encode, key, chunk.texts)
        return loop.run_in_executor(self._threads, self._tokenize, chunk)

    def shutdown(self) -> None:
        for pool in (self._threads, self._procs):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _ensure_processes(self, model: SentimentModel, key: str) -> None:
        """One process pool per tokenisation; a swap to a model with another tokenizer
        replaces the pool (the old one finishes its queued chunks first)."""
        if self._procs is not None and self._proc_key == key:
            return
        if self._procs is not None:
            self._procs.shutdown(wait=False)
        te = model.text_encoder
        self._procs = ProcessPoolExecutor(
            self.processes, mp_context=get_context("spawn"), initializer=process_init,
            initargs=(key, te.tokenizer.to_str(), te.max_length, self.cache_size,
                      te.language))
        self._proc_key = key

    def _tokenize(self, chunk: Chunk) -> Tokenised:
        model = self.provider.current()  # at run time: a swap meanwhile is picked up here
        key, encoder, _ = self.tools.get(model, with_runner=False)
        chunk.tok_key = key
        enc, hits = encoder.encode_counted(chunk.texts)
        return enc.input_ids, enc.lengths, enc.truncated, hits
