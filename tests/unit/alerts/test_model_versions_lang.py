"""A series mixing English and Chinese documents: windows carry both models or one; only a
language whose own model changed is a model change (scores suppressed while re-basing)."""
from services.alerts.detector import window_version
from services.alerts.model import join_versions, parse_versions


def test_window_version_is_per_language_and_plain_for_english():
    assert window_version({"m1": 3, "m0": 1}) == "m1"
    assert window_version({"m1": 3, "zh=b1": 5}) == "m1;zh=b1"
    assert window_version({"zh=b1": 2}) == "zh=b1"
    assert parse_versions("m1;zh=b1") == {"en": "m1", "zh": "b1"}
    assert join_versions({"zh": "b1", "en": "m1"}) == "m1;zh=b1"


def test_alternating_languages_are_not_model_changes_but_a_new_zh_model_is():
    from services.alerts.model import _model_swap

    class St:
        model_version = None

        class neg:  # noqa: N801 - a stand-in for the learned state
            hours = 10

        settle = None

    class Cfg:
        settle_windows = 72

    st = St()
    assert _model_swap(st, 1, "m1", Cfg) == (None, None)
    assert _model_swap(st, 2, "zh=b1", Cfg) == (None, None)
    assert _model_swap(st, 3, "m1;zh=b1", Cfg) == (None, None)
    assert _model_swap(st, 4, "m1", Cfg) == (None, None)
    assert st.model_version == "m1;zh=b1"
    note, detail = _model_swap(st, 5, "zh=b2", Cfg)
    assert note == "model_change" and detail["to"] == "zh=b2"
    assert st.model_version == "m1;zh=b2"
