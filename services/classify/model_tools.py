"""What the worker builds per model: tokenizer key, fast encoder, device runner.

Built lazily, once per model, from whichever thread first needs them (tokenizer threads
need the encoder, forward threads also the runner), and kept for the current and the
previous model only: during a hot swap rows tokenised by the old model are still pending,
and anything older can be let go.
"""
from __future__ import annotations

import threading

from models.sentiment import SentimentModel
from services.classify.encoding import FastEncoder, tokenizer_key
from services.classify.runners import Runner, make_runner, warm_up


class ModelTools:
    """Thread-safe cache of (model, tokenizer key, encoder, runner) keyed by model."""

    def __init__(self, cache_size: int, compile_mode: str | None, max_batch: int) -> None:
        self.cache_size = cache_size
        self.compile_mode = compile_mode
        self.max_batch = max_batch  # the largest shape the CUDA warm-up runs
        self._tools: dict[int, tuple[SentimentModel, str, FastEncoder, Runner | None]] = {}
        self._lock = threading.Lock()
        self._runner_lock = threading.Lock()  # one runner build per model, whichever thread

    def key_of(self, model: SentimentModel) -> str | None:
        """The tokenizer key if ``model``'s tools are built already (no building here)."""
        got = self._tools.get(id(model))
        return got[1] if got is not None and got[0] is model else None

    def get(self, model: SentimentModel, with_runner: bool) -> tuple[str, FastEncoder,
                                                                      Runner | None]:
        """(tokenizer key, encoder, runner) for ``model``; the runner only if asked."""
        key = id(model)
        with self._lock:
            got = self._tools.get(key)
        if got is None or got[0] is not model:
            fresh = (model, tokenizer_key(model), FastEncoder(model, self.cache_size), None)
            with self._lock:  # another thread may have added it meanwhile: keep theirs
                got = self._tools.get(key)
                if got is None or got[0] is not model:
                    got = self._tools[key] = fresh
                    if len(self._tools) > 2:  # keep current + previous only
                        for k in list(self._tools)[:-2]:
                            del self._tools[k]
        if with_runner and got[3] is None:  # forward threads only; built once per model
            with self._runner_lock:
                with self._lock:
                    got = self._tools.get(key, got)
                if got[3] is None:
                    runner = make_runner(model, compile_mode=self.compile_mode)
                    if model.device.type == "cuda":
                        warm_up(runner, self.max_batch, model.max_length)
                    got = (model, got[1], got[2], runner)
                    with self._lock:
                        self._tools[key] = got
        return got[1], got[2], got[3]
