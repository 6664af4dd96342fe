"""Making a batch's effects durable before its input is acknowledged.

Every agent follows one rule: *retry an effect until it is durable, or die without acking*.

* :class:`~services.core.errors.BackendUnavailable` (Kafka, Redis or Elasticsearch down, or a
  sink's :class:`~services.core.errors.SinkBackpressure`) is retried with capped exponential
  backoff (``retry_after`` wins when the sink gives one). While we wait, the agent does not
  move past its batch, so nothing is acked; Faust pauses fetching once its stream buffer is
  full, which is the pause in consumption a sink's backpressure asks for.
* Anything else is a bug or a broken environment. We must not leave the ``take`` loop with an
  exception: Faust's ``take``/``take_events`` acks the buffered events in a ``finally`` when
  the generator is closed, and the consumer would then commit offsets of documents whose
  effects never happened (loss). So :func:`die` logs and ends the process at once with
  ``os._exit`` -- exactly like ``kill -9``, which the crash-safety test proves harmless: on
  restart the uncommitted batch is delivered again and every effect is idempotent.
* A worker being stopped (SIGTERM, Ctrl-C, a deploy) is the same hazard from the other side:
  Faust cancels its agents, and a batch cut by that cancel was acked and committed
  unprocessed (measured with faust-streaming 0.15). So every batch runs in
  :func:`finish_batch`: a stop waits until the batch in flight is durable (then acking it is
  right), for up to ``stop_grace_s``; past that the process exits without acking, like
  ``kill -9``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.core.aio import hold_off_cancel
from services.core.errors import BackendError, BackendUnavailable, SinkBackpressure

T = TypeVar("T")
log = logging.getLogger(__name__)

EXIT_UNEXPECTED = 70
EXIT_STOPPED_MID_BATCH = 75


def die(what: str, exc: BaseException) -> None:
    log.critical("%s failed with an unexpected error; exiting without acknowledging the batch "
                 "(it will be processed again on restart): %r", what, exc, exc_info=exc)
    sys.stderr.flush()
    os._exit(EXIT_UNEXPECTED)


# While a backend is down an agent retries every few seconds; one line per retry buried the
# real news (a 22 s Kafka outage wrote over a thousand lines). So: one warning when an
# effect starts failing, a reminder every OUTAGE_REMINDER_S, one line when it succeeds again.
OUTAGE_REMINDER_S = 30.0


async def until_durable(what: str, effect: Callable[[], Awaitable[T]], *,
                        first_delay: float = 0.2, max_delay: float = 10.0,
                        retry_rejected: bool = False,
                        clock: Callable[[], float] = time.monotonic) -> T:
    """Run ``effect()`` until it succeeds; see the module docstring for what is retried."""
    delay = first_delay
    attempt = 0
    down_since: float | None = None
    reminded = 0.0

    def failing(problem: str, wait: float) -> None:
        nonlocal down_since, reminded
        now = clock()
        if down_since is None:
            down_since = reminded = now
            log.warning("%s: %s; retrying every few seconds until it succeeds", what, problem)
        elif now - reminded >= OUTAGE_REMINDER_S:
            reminded = now
            log.warning("%s: still failing after %.0fs (%d attempts): %s", what,
                        now - down_since, attempt, problem)
        else:
            log.debug("%s: %s; retrying in %.1fs (attempt %d)", what, problem, wait, attempt)

    while True:
        attempt += 1
        try:
            result = await effect()
        except asyncio.CancelledError:
            raise
        except SinkBackpressure as exc:
            wait = max(exc.retry_after, first_delay)
            failing(f"{exc.service} is busy (pausing {wait:.1f}s)", wait)
            await asyncio.sleep(wait)
            continue
        except BackendUnavailable as exc:
            failing(str(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
            continue
        except BackendError as exc:
            if not retry_rejected:
                die(what, exc)
            failing(str(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
            continue
        except Exception as exc:  # noqa: BLE001 - see module docstring
            die(what, exc)
            raise  # unreachable; keeps type checkers happy
        if down_since is not None:
            log.warning("%s: succeeded again after %.0fs (%d attempts)", what,
                        clock() - down_since, attempt)
        return result


async def finish_batch(what: str, work: Awaitable[T], grace_s: float) -> T:
    """Run one batch's ``work`` to its end, holding off a cancel (a stopping worker) until the
    batch is durable or ``grace_s`` has passed; see the module docstring."""
    task = asyncio.ensure_future(work)
    stopping = False
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        stopping = True
        log.warning("%s: stopping; finishing the batch in flight first (up to %.0fs)",
                    what, grace_s)
        await hold_off_cancel(task, grace_s, cancelled=True)
    except Exception:  # noqa: BLE001 - task.exception() below has it
        pass
    if not task.done() or task.cancelled():  # nothing is known to be durable
        log.critical("%s: stopping, and the batch in flight is not durable (%s); exiting "
                     "without acknowledging it (it will be processed again)", what,
                     "cancelled" if task.done() else f"still running after {grace_s:.0f}s")
        sys.stderr.flush()
        os._exit(EXIT_STOPPED_MID_BATCH)
    exc = task.exception()
    if exc is not None:  # never leave the take loop with an exception: Faust would ack
        die(what, exc)
    if stopping:
        raise asyncio.CancelledError  # durable now: the stop may ack it and go on
    return task.result()
