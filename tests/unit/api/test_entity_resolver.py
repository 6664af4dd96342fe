"""The API's entity parameter: any code spelling or Chinese name resolves to the watchlist id;
ambiguous and unknown entities are 400s that say what to give instead."""
from __future__ import annotations

import pytest
from fastapi import HTTPException

from models.text_zh import to_simplified
from services.api.params import ENTITY_PATTERN, EntityResolver
from services.core.watchlist import Watchlist


class FakeES:
    def __init__(self, entities: set[str]) -> None:
        self.entities = entities
        self.calls: list[str] = []

    async def count(self, index: str, ignore_unavailable: bool, query: dict) -> dict:
        e = query["term"]["entities"]
        self.calls.append(e)
        return {"count": int(e in self.entities)}


@pytest.fixture
def es() -> FakeES:
    return FakeES({"ZZZQ", "600000.SH"})


@pytest.fixture
def resolver(es: FakeES) -> EntityResolver:
    return EntityResolver(Watchlist.from_file(fold=to_simplified), es, "docs")  # type: ignore[arg-type]


@pytest.mark.parametrize(("given", "entity"), [
    ("贵州茅台", "600519.SH"), ("贵州茅台酒股份有限公司", "600519.SH"), ("茅台", "600519.SH"),
    ("600519", "600519.SH"), ("600519.SH", "600519.SH"), ("SH600519", "600519.SH"),
    ("sh600519", "600519.SH"), ("600519.SS", "600519.SH"), ("$贵州茅台(600519)$", "600519.SH"),
    ("騰訊", "0700.HK"), ("腾讯控股", "0700.HK"), ("00700.HK", "0700.HK"), ("700", "0700.HK"),
    ("HK00700", "0700.HK"), ("Tencent", "0700.HK"), ("中国平安", "2318.HK"),
    ("601318.SH", "2318.HK"), ("平安银行", "000001.SZ"), ("000001", "000001.SZ"),
    ("恒大", "3333.HK"),
    # English behaviour unchanged
    ("aapl", "AAPL"), ("$AAPL", "AAPL"), ("GOOG", "GOOGL"), ("BRK-B", "BRK.B"),
])
async def test_names_and_codes_resolve_to_the_id(resolver: EntityResolver, es: FakeES,
                                                 given: str, entity: str) -> None:
    assert await resolver.resolve(given) == entity
    assert es.calls == []  # the watchlist answers; ES is not asked


async def test_tickers_only_in_documents_still_resolve(resolver: EntityResolver) -> None:
    assert await resolver.resolve("zzzq") == "ZZZQ"
    assert await resolver.resolve("SH600000") == "600000.SH"  # any spelling of the code


@pytest.mark.parametrize(("given", "detail"), [
    ("平安", "ambiguous entity '平安': 中国平安 (2318.HK) or 平安银行 (000001.SZ)"),
    ("中信", "ambiguous entity '中信'"),
    ("某某科技", "unknown entity '某某科技': not a name on the watchlist; give its code"),
    ("ZZZZQ", "unknown entity 'ZZZZQ': not on the watchlist and in no indexed document"),
    ("688888", "unknown entity '688888'"),
])
async def test_ambiguous_and_unknown_are_400_with_a_reason(resolver: EntityResolver,
                                                           given: str, detail: str) -> None:
    with pytest.raises(HTTPException) as info:
        await resolver.resolve(given)
    assert info.value.status_code == 400 and detail in info.value.detail


def test_the_query_pattern_takes_chinese_and_refuses_the_key_separator() -> None:
    import re

    for ok in ("贵州茅台", "$贵州茅台(600519)$", "600519.SH", "Apple Inc.", "*"):
        assert re.match(ENTITY_PATTERN, ok), ok
    for bad in ("a|b", "x\ny"):
        assert not re.match(ENTITY_PATTERN, bad), bad


@pytest.mark.parametrize(("given", "entity"), [
    ("贵州茅台", "600519.SH"), ("騰訊", "0700.HK"), ("sh600519", "600519.SH"),
    ("googl", "GOOGL"), ("ZZZQ", "ZZZQ"),  # a ticker not seen yet may be muted ahead of time
])
def test_silences_take_chinese_names_and_codes(given: str, entity: str):
    from services.api.routers.subscriptions import silence_entity

    assert silence_entity(Watchlist.from_file(fold=to_simplified), given) == entity


@pytest.mark.parametrize(("given", "says"), [("平安", "ambiguous"), ("某某公司", "unknown entity")])
def test_a_silence_on_an_ambiguous_or_unknown_name_is_a_400(given: str, says: str):
    from services.api.routers.subscriptions import silence_entity

    with pytest.raises(HTTPException) as e:
        silence_entity(Watchlist.from_file(fold=to_simplified), given)
    assert e.value.status_code == 400 and says in e.value.detail
