"""The index sink takes its Chinese analysis from the settings (no connection is made)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.core.config import Settings
from services.index.sink import build_sink


async def test_build_sink_passes_the_chinese_analysis() -> None:
    for mode in ("bigram", "ik"):
        sink = build_sink(Settings(es_zh_analysis=mode))
        try:
            assert sink.zh_analysis == mode
        finally:
            await sink.es.close()
    assert Settings().es_zh_analysis == "bigram"
    with pytest.raises(ValidationError):
        Settings(es_zh_analysis="jieba")
