"""Never let Faust commit past a message that is still being processed.

Faust commits, per partition, the end of the first run of consecutive acknowledged offsets
(``Consumer._new_offset``). When events of one partition are processed by several actors of
one agent (the classify agent runs ``classify_actors`` of them), acks arrive out of order,
and faust-streaming 0.15 guards that only partly: its "gap at the head" check is off by one
(committed offset 100, offset 100 still in an actor, 101 acked: it commits 102) and is skipped
altogether before a partition's first commit (offsets 0-49 in flight, 50-99 acked: it commits
100). A crash in that window would lose the in-flight documents -- exactly what yuqing's
offset rule (``services/app.py``) forbids.

The guard adds the check that holds in every case: if a message of the partition that Faust
is still tracking as unacknowledged has a lower offset than the first acknowledged one, there
is nothing to commit yet. Messages are tracked (``Consumer.track_message``) in fetch order
before any stream sees them, so an unfinished lower offset is always among them. The original
method then runs unchanged, so its bookkeeping stays Faust's own.
``tests/unit/core/test_faust_commits.py`` runs Faust's real method with and without it.
"""
from __future__ import annotations

from typing import Any

_ORIGINAL: Any = None


def head_is_pending(consumer: Any, tp: Any) -> bool:
    """True when a tracked, unacknowledged message of ``tp`` precedes its first acked offset."""
    from faust.types.tuples import ack_lock

    acked = consumer._acked[tp]
    if not acked:
        return False
    committed = consumer._committed_offset[tp]
    if committed is not None and min(acked) <= committed:
        return False  # the next offset to commit is acked: no gap at the head (the usual case)
    with ack_lock:  # acks may come from other threads; the set changes under them
        head = min(acked)
        return any(m.tp == tp and not m.acked and m.offset < head
                   for m in list(consumer._unacked_messages))


def guard_commits() -> None:
    """Install the guard on Faust's consumer (idempotent)."""
    global _ORIGINAL
    from faust.transport.consumer import Consumer

    if _ORIGINAL is not None:
        return
    _ORIGINAL = Consumer._new_offset
    for name in ("_acked", "_unacked_messages", "_committed_offset"):
        if name not in Consumer.__init__.__code__.co_names:
            raise RuntimeError(f"faust changed: Consumer has no {name}; update "
                               "services/stream/faust_commits.py")

    def _new_offset(self, tp):  # type: ignore[no-untyped-def]
        if head_is_pending(self, tp):
            return None
        return _ORIGINAL(self, tp)

    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
