"""The Chinese taxonomy: risk events on realistic headlines (written for these tests), the same
topic ids as English where the meaning is the same, traditional text, and the longest-match
and `not` rules."""
from __future__ import annotations

import pytest

from services.ingest.normalize import clean_text
from services.ingest.taxonomy import TopicTagger


@pytest.fixture(scope="module")
def tagger() -> TopicTagger:
    return TopicTagger.from_file()


def first(tagger: TopicTagger, text: str) -> str | None:
    topics = tagger.tag(clean_text(text, 2000))
    return topics[0] if topics else None


@pytest.mark.parametrize(("text", "topic"), [
    # 业绩预告/业绩
    ("某光伏龙头发布2026年业绩预告：预计归母净利润同比下降六成", "earnings"),
    ("宁德时代三季报超预期，营业收入同比增长12%", "earnings"),
    ("商誉减值拖累，公司全年由盈转亏", "earnings"),
    ("腾讯控股发布盈利指引，上调全年收入指引", "earnings"),
    # 监管处罚/立案调查
    ("因涉嫌信息披露违法违规，证监会决定对公司立案调查", "legal"),
    ("公司收到行政处罚决定书，被罚款500万元", "legal"),
    ("交易所下发问询函，要求说明大额资金往来", "legal"),
    # 诉讼/仲裁
    ("供应商提起诉讼索赔3亿元，一审判决公司败诉", "legal"),
    ("双方合同纠纷提交仲裁", "legal"),
    # 违约/逾期, 爆雷/跑路
    ("房企美元债实质性违约，境内债申请展期", "credit"),
    ("商票逾期规模扩大，多家供应商追债", "credit"),
    ("P2P平台爆雷，老板跑路，投资人提现困难", "credit"),
    ("债权人申请对公司进行破产重整", "credit"),
    # 减持/质押
    ("控股股东拟减持不超过2%股份", "shareholding"),
    ("实控人股权质押比例超八成，存平仓风险", "shareholding"),
    ("控股股东增持计划实施完毕", "shareholding"),
    # 并购重组
    ("公司筹划重大资产重组，股票自明日起停牌", "mergers"),
    ("拟以换股方式吸收合并子公司", "mergers"),
    # 中标/合同
    ("公司预中标国家电网特高压项目，金额约12亿元", "contracts"),
    ("与海外客户签订重大合同，订单金额占去年营收三成", "contracts"),
    # 裁员 (management, as "layoffs" is in English)
    ("互联网大厂新一轮裁员，涉及多个业务线", "management"),
    # 评级
    ("中信证券首次覆盖，给予买入评级，目标价180元", "analyst"),
    ("穆迪将公司评级展望下调至负面", "analyst"),
    ("券商下调评级至中性", "analyst"),
    # 停牌/退市
    ("公司股票被实施退市风险警示，简称变更为*ST某某", "delisting"),
    ("连续二十个交易日收盘价低于1元，面临面值退市", "delisting"),
    ("公司股票今日停牌核查", "markets"),  # a halt is a markets event, as "trading halt" is
])
def test_risk_events(tagger: TopicTagger, text: str, topic: str) -> None:
    assert first(tagger, text) == topic


@pytest.mark.parametrize(("en", "zh"), [
    ("Company issues profit warning as quarterly loss widens", "公司发布业绩预告，预计季度亏损扩大"),
    ("Regulator fines bank over lending practices", "监管机构对银行处以罚款"),
    ("Developer misses coupon payment, faces bankruptcy", "开发商债务违约，面临破产"),
    ("Founder sells stake in share pledge unwind", "创始人减持股份以解除股权质押"),
    ("Firm wins contract for new metro line", "公司中标地铁新线项目"),
    ("Broker downgrades the stock to underweight", "券商下调评级"),
    ("Exchange moves to delist the shares", "交易所决定对公司股票终止上市"),
    ("Tech giant announces layoffs of 5% of staff", "科技巨头宣布裁员5%"),
])
def test_english_and_chinese_share_topic_ids(tagger: TopicTagger, en: str, zh: str) -> None:
    assert first(tagger, en) == first(tagger, zh) is not None


def test_traditional_text_is_folded(tagger: TopicTagger) -> None:
    assert first(tagger, "公司發布業績預告，淨利潤大幅下滑") == "earnings"
    assert first(tagger, "證監會對公司立案調查") == "legal"
    assert first(tagger, "大股東減持並質押股份") == "shareholding"


@pytest.mark.parametrize(("text", "not_topic"), [
    ("上市公司董事会秘书培训", "capital"),           # 上市公司 is not a listing
    ("重组蛋白药物进入临床试验", "mergers"),          # recombinant protein, no restructuring
    ("公司发布公告称经营正常", "products"),           # 发布公告 is not a launch
    ("大股东增持股份，券商给予增持评级", None),       # both readings, each its own
    ("维持增持评级", "shareholding"),                 # a rating, not a share purchase
    ("给予减持评级", "shareholding"),
    ("合并报表净利润增长", "mergers"),               # consolidated statements: earnings
    ("公司终止上市", "capital"),                     # a delisting is not a listing
    ("业绩爆雷", "credit"),                          # an earnings miss, not a default
])
def test_longest_match_and_not_phrases(tagger: TopicTagger, text: str,
                                       not_topic: str | None) -> None:
    topics = tagger.tag(clean_text(text, 2000))
    if not_topic is not None:
        assert not_topic not in topics, topics
    else:
        assert set(topics) == {"shareholding", "analyst"}


def test_chinese_producer_categories(tagger: TopicTagger) -> None:
    assert tagger.tag("任何文本", category="并购重组") == ["mergers"]
    assert tagger.tag("任何文本", category="業績") == ["earnings"]  # traditional
    assert tagger.tag("任何文本", category="违约") == ["credit"]
    assert tagger.tag("任何文本", category="减持") == ["shareholding"]


def test_unknown_topic_keys_are_refused() -> None:
    from services.core.errors import ConfigError

    with pytest.raises(ConfigError, match="use keywords, cased, zh, not"):
        TopicTagger.from_mapping({"topics": {"a": {"keyword": ["x"]}}})
