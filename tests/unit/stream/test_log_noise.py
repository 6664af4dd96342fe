"""The Kafka libraries' repeated outage warnings are rate-limited, our own logs never."""
from __future__ import annotations

import io
import logging

import pytest

from services.stream import log_noise
from services.stream.log_noise import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def capture():
    clock = Clock()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(RepeatFilter(30.0, clock=clock))
    loggers = [logging.getLogger(n) for n in ("aiokafka.conn", "faust.worker", "services.x")]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    yield clock, stream
    for lg in loggers:
        lg.removeHandler(handler)
        lg.propagate = True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_outage_flood_is_one_line_per_template_per_interval(capture):
    clock, stream = capture
    conn = logging.getLogger("aiokafka.conn")
    for i in range(500):  # a reconnect loop: same template, different arguments
        conn.error("Unable connect to node with id %s: %s", 1, f"refused {i}")
        conn.error("Unable to update metadata from [%s]", 1)
        clock.t += 0.05  # 25 s of outage
    assert len(lines(stream)) == 2
    clock.t += 10  # past 30 s since the first: the next one passes, with the count
    conn.error("Unable connect to node with id %s: %s", 1, "refused again")
    out = lines(stream)
    assert len(out) == 3
    assert out[-1] == "ERROR aiokafka.conn Unable connect to node with id 1: refused again " \
                      "(499 similar suppressed)"
    clock.t += 31  # quiet since: passes without a suffix
    conn.error("Unable connect to node with id %s: %s", 1, "x")
    assert lines(stream)[-1].endswith("refused again (499 similar suppressed)") is False
    assert "suppressed" not in lines(stream)[-1]


def test_other_loggers_and_info_are_untouched(capture):
    _, stream = capture
    ours = logging.getLogger("services.x")
    ours.setLevel(logging.INFO)
    faust_log = logging.getLogger("faust.worker")
    faust_log.setLevel(logging.INFO)
    for _ in range(5):
        ours.error("backend down")
        faust_log.info("rebalancing")
    assert len(lines(stream)) == 10
    faust_log.warning("Heartbeat failed %s", 1)
    faust_log.warning("Heartbeat failed %s", 2)
    assert len(lines(stream)) == 11


def test_install_puts_one_filter_on_each_root_handler():
    root = logging.getLogger()
    h = logging.StreamHandler(io.StringIO())
    root.addHandler(h)
    try:
        f = log_noise.install()
        assert log_noise.install() is f
        assert h.filters.count(f) == 1
    finally:
        root.removeHandler(h)
