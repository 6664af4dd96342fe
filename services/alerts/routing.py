"""Pure routing and timing rules: which subscription gets an alert, and when.

No I/O here: :mod:`services.alerts.delivery` reads the state from Redis, asks these functions what
to do, and writes the answer back in one transaction. Keeping the decisions pure is what lets the
unit tests pin Alertmanager-style timing (group_wait / group_interval / repeat_interval, silences)
without clocks or servers.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.alerts.subscriptions import Silence, Subscription
from services.core.schemas import SEVERITY_ORDER, Alert

Outcome = Literal["filtered", "disabled", "silenced", "repeat", "duplicate", "opened", "joined"]


def alert_sources(alert: Alert) -> set[str]:
    """Sources of the evidence documents (doc ids are '<kind>:<source>:<id>')."""
    out: set[str] = set()
    for ev in alert.evidence:
        parts = ev.doc_id.split(":", 2)
        if len(parts) == 3:
            out.add(parts[1])
    return out


def matches(sub: Subscription, alert: Alert) -> bool:
    """True when the subscription's filters accept the alert (empty filter lists accept all);
    a ``resolved`` event only when the subscription asked for resolutions."""
    if alert.state == "resolved" and not sub.notify_resolved:
        return False
    f = sub.filters
    if SEVERITY_ORDER[alert.severity] < SEVERITY_ORDER[f.min_severity]:
        return False
    if f.entities and alert.entity.upper() not in f.entities:
        return False
    if f.topics and alert.topic not in f.topics:
        return False
    if f.sources and not (alert_sources(alert) & set(f.sources)):
        return False
    return True


def active_silence(silences: list[Silence], alert: Alert, now: datetime) -> Silence | None:
    """The first silence that mutes the alert at ``now`` (both fields must match when both set)."""
    for s in silences:
        if s.until <= now:
            continue
        if s.entity is not None and s.entity != alert.entity.upper():
            continue
        if s.topic is not None and s.topic != alert.topic:
            continue
        return s
    return None


def group_key(alert: Alert) -> str:
    """Alerts are grouped per subscription by entity."""
    return alert.entity.upper()


def alert_fingerprint(alert: Alert) -> str:
    """What "the same alert again" means for repeat_interval: same entity and topic."""
    return f"{alert.entity.upper()}|{alert.topic}"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    due_at: float | None = None  # epoch seconds the group should be sent (opened/joined)
    reason: str = ""


def decide(sub: Subscription, alert: Alert, now: datetime, *, seen: bool,
           group_due_at: float | None, last_group_sent: float | None,
           last_fingerprint_sent: float | None) -> Decision:
    """What to do with one alert for one subscription.

    ``group_due_at`` is set when a group for the alert's entity is already pending;
    ``last_group_sent`` / ``last_fingerprint_sent`` are epoch seconds of the last send for the
    entity / the entity+topic (None if never).
    """
    ts = now.timestamp()
    if seen:
        return Decision("duplicate", reason="alert already routed to this subscription")
    if not sub.enabled:
        return Decision("disabled", reason="subscription disabled")
    if not matches(sub, alert):
        return Decision("filtered", reason="filters do not match")
    silence = active_silence(sub.silences, alert, now)
    if silence is not None:
        return Decision("silenced",
                        reason=f"silence {silence.id} until {silence.until.isoformat()}")
    # repeat_interval mutes the same news again (a new episode of the same entity and topic
    # soon after the last notification); an escalation or the resolution of an episode the
    # subscriber was told about is new information, never a repeat
    if (alert.state == "firing" and last_fingerprint_sent is not None
            and ts - last_fingerprint_sent < sub.repeat_interval_s):
        ago = ts - last_fingerprint_sent
        return Decision("repeat", reason=f"same entity and topic notified {ago:.0f}s ago "
                                         f"(repeat_interval {sub.repeat_interval_s:.0f}s)")
    if group_due_at is not None:
        return Decision("joined", due_at=group_due_at)
    return Decision("opened", due_at=first_send_at(ts, sub.group_wait_s, sub.group_interval_s,
                                                    last_group_sent))


def first_send_at(now: float, group_wait_s: float, group_interval_s: float,
                  last_group_sent: float | None) -> float:
    """A new group is sent after group_wait, but never sooner than group_interval after the last
    send for the same entity."""
    due = now + group_wait_s
    if last_group_sent is not None:
        due = max(due, last_group_sent + group_interval_s)
    return due


def retryable_status(status: int) -> bool:
    """5xx, 429 (slow down) and 408 (timeout) are worth retrying; other 4xx are the receiver
    saying no and retrying would only repeat the answer."""
    return status >= 500 or status in (408, 425, 429)
