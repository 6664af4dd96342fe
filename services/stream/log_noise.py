"""Rate-limit the Kafka client libraries' repeated warnings during an outage.

While a broker is away, aiokafka (and Faust around it) log the same WARNING/ERROR on every
reconnect attempt, per connection and per partition: a 22 s Kafka restart wrote 1,019 ERROR
lines. Our own code says once that a backend is gone, reminds every 30 s and says when it is
back (``services.stream.effects``); this filter makes the libraries do about the same: the
first record of a (logger, message template) passes, further ones within ``interval_s`` are
counted and dropped, and the next one to pass says "(N similar suppressed)".

Records below WARNING and loggers outside ``PREFIXES`` are never touched. Installed on the
root logger's handlers (``install``) by ``yuqing worker`` and ``yuqing deliver``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

PREFIXES = ("aiokafka", "kafka", "faust", "mode")
INTERVAL_S = 30.0


def _noisy(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PREFIXES)


class RepeatFilter(logging.Filter):
    """One record per (logger, message template) per ``interval_s``; the next that passes
    carries the count of those suppressed in between."""

    def __init__(self, interval_s: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        # (logger, template) -> [last time passed, suppressed since]
        self._seen: dict[tuple[str, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not _noisy(record.name):
            return True
        if getattr(record, "_yuqing_counted", False):  # the same record at a second handler
            return not getattr(record, "_yuqing_dropped", False)
        key = (record.name, str(record.msg))
        now = self._clock()
        with self._lock:
            slot = self._seen.get(key)
            if slot is not None and now - slot[0] < self.interval_s:
                slot[1] += 1
                record._yuqing_counted = True
                record._yuqing_dropped = True
                return False
            suppressed = int(slot[1]) if slot is not None else 0
            self._seen[key] = [now, 0]
            if len(self._seen) > 10_000:  # templates are few; never grow without bound
                self._seen.clear()
        record._yuqing_counted = True
        record._yuqing_dropped = False
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} similar suppressed)"
        return True


_installed: RepeatFilter | None = None


def install(interval_s: float = INTERVAL_S) -> RepeatFilter:
    """Put one shared :class:`RepeatFilter` on every handler of the root logger (call again
    after something replaced the handlers; a handler never gets it twice)."""
    global _installed
    if _installed is None:
        _installed = RepeatFilter(interval_s)
    for handler in logging.getLogger().handlers:
        if _installed not in handler.filters:
            handler.addFilter(_installed)
    return _installed
