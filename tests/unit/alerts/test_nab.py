"""NAB scoring (bench.nab) on small hand-made cases."""
from __future__ import annotations

import pytest

from bench import nab

N = 1000  # probation: 150 rows
WINS = [(300, 399), (700, 799)]


def norm(dets: list[int]) -> float:
    return nab.score_series(N, WINS, dets).normalised


def test_probation_is_capped_like_nab() -> None:
    assert nab.probation_rows(1000) == 150
    assert nab.probation_rows(15_900) == 750


def test_perfect_detector_scores_100_and_null_0() -> None:
    assert norm([300, 700]) == pytest.approx(100.0)
    assert norm([]) == pytest.approx(0.0)


def test_a_false_positive_lowers_the_score() -> None:
    assert norm([300, 700, 200]) < norm([300, 700])
    # an FP before any window costs the full A_FP; just after a window it costs less
    before = 100 - norm([300, 700, 200])
    just_after = 100 - norm([300, 700, 401])
    assert before == pytest.approx(100 * 0.11 / 4)
    assert 0 < just_after < before


def test_an_early_detection_beats_a_late_one_and_only_the_first_counts() -> None:
    assert norm([310, 700]) > norm([390, 700])
    assert norm([310, 390, 700]) == pytest.approx(norm([310, 700]))


def test_detections_in_probation_are_ignored() -> None:
    assert norm([10, 300, 700]) == pytest.approx(100.0)


def test_counts() -> None:
    s = nab.score_series(N, WINS, [305, 500, 900])
    assert (s.windows, s.detected, s.missed, s.false_alerts, s.delays) == (2, 1, 1, 2, [5])
