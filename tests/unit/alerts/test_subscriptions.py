"""Subscription models: validation, patching, and secrets that never leave."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.alerts.subscriptions import (
    MASK,
    SubscriptionIn,
    SubscriptionPatch,
    apply_patch,
    new_subscription,
)

SECRET = "whsec-0123456789abcdef"


def body(**kw):
    data = {"name": "desk", "channel": {"type": "webhook", "url": "https://hooks.example/x",
                                        "secret": SECRET},
            "filters": {"entities": ["aapl", "$MSFT"], "min_severity": "warning"}}
    data.update(kw)
    return SubscriptionIn.model_validate(data)


def test_secret_is_stored_but_masked_everywhere_else():
    sub = new_subscription(body(), owner_key_id="k1")
    assert SECRET in sub.to_json()                       # needed to sign
    public = sub.public().model_dump_json()
    assert SECRET not in public and MASK in public
    assert SECRET not in repr(sub) and SECRET not in str(sub.channel)
    again = type(sub).from_json(sub.to_json())
    assert again.channel.secret.get_secret_value() == SECRET
    assert sub.filters.entities == ["AAPL", "MSFT"]


@pytest.mark.parametrize("change,field", [
    ({"channel": {"type": "webhook", "url": "ftp://x", "secret": SECRET}}, "url"),
    ({"channel": {"type": "webhook", "url": "https://x.example", "secret": "short"}}, "secret"),
    ({"channel": {"type": "sms", "to": "1"}}, "channel"),
    ({"group_wait_s": -1}, "group_wait_s"),
    ({"silences": [{"until": "2030-01-01T00:00:00Z"}]}, "silences"),
    ({"colour": "red"}, "colour"),
])
def test_invalid_bodies_name_the_field(change, field):
    with pytest.raises(ValidationError) as err:
        body(**change)
    assert field in str(err.value)


def test_patch_changes_only_given_fields():
    sub = new_subscription(body())
    patched = apply_patch(sub, SubscriptionPatch(name="renamed", group_wait_s=5))
    assert (patched.name, patched.group_wait_s) == ("renamed", 5)
    assert patched.filters == sub.filters and patched.channel == sub.channel
    assert patched.updated_at >= sub.updated_at
    kafka = apply_patch(sub, SubscriptionPatch.model_validate(
        {"channel": {"type": "kafka", "topic": "desk.alerts"}}))
    assert kafka.channel.type == "kafka"
