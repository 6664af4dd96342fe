"""A realistic synthetic feed: news and comments about a dozen companies over a simulated day.

It is the project's own generator (no external data): headline and comment templates by
sentiment and topic, a daily volume curve (busy around the market open and close, quiet at
night), per-company news flow, syndicated copies of some stories (the same story re-published
by another wire, which ingest must drop and count), optionally malformed messages (for the
DLQ), and one injected negative spike: a burst of bad news and angry comments about one
company within a few minutes -- the event the alert detector must catch.

Everything is deterministic for a given :class:`FeedSpec` (seeded RNG), and every item says
what it is (``meta``: intended sentiment, company, copy-of, invalid reason, in-spike), so
tests can compute the expected outcome from the feed itself.
"""
from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

# (ticker, the name used in text -- one the shipped watchlist links)
COMPANIES: tuple[tuple[str, str], ...] = (
    ("AAPL", "Apple"), ("MSFT", "Microsoft"), ("GOOGL", "Google"), ("AMZN", "Amazon"),
    ("META", "Meta"), ("TSLA", "Tesla"), ("NVDA", "Nvidia"), ("JPM", "JPMorgan"),
    ("GS", "Goldman Sachs"), ("BABA", "Alibaba"), ("0700.HK", "Tencent"), ("SHEL", "Shell"),
)

# Chinese companies (canonical id, the name used in text): A-share and HK names of the
# shipped watchlist; their news and 股吧 posts are written in Chinese.
COMPANIES_ZH: tuple[tuple[str, str], ...] = (
    ("600519.SH", "贵州茅台"), ("300750.SZ", "宁德时代"), ("2318.HK", "中国平安"),
    ("000001.SZ", "平安银行"), ("600036.SH", "招商银行"), ("1211.HK", "比亚迪"),
    ("000333.SZ", "美的集团"), ("3690.HK", "美团"),
)
NEWS_SOURCES_ZH = ("xinhua-finance", "cls", "stcn", "cnstock", "yicai")
COMMENT_SOURCES_ZH = ("guba", "xueqiu", "weibo")

NEWS_SOURCES = ("reuters", "bloomberg", "cnbc", "marketwatch", "ft", "wsj", "caixin")
COMMENT_SOURCES = ("stocktwits", "reddit", "xueqiu", "twitter")

_POS = [
    ("earnings", "{co} beats quarterly estimates as revenue jumps {pct}%",
     "{co} reported results well ahead of analyst forecasts, with revenue up {pct}% and margins"
     " expanding."),
    ("analyst", "Analysts raise {co} price target after strong {q} guidance",
     "Several brokers lifted their targets on {co}, citing robust demand and upbeat guidance for"
     " {q}."),
    ("products", "{co} unveils new product line to strong early demand",
     "Preorders for {co}'s latest launch exceeded expectations, the company said on {day}."),
    ("capital", "{co} announces ${amt} billion buyback and dividend increase",
     "{co} will return ${amt} billion to shareholders, signalling confidence in its cash flow."),
    ("markets", "{co} shares rally {pct}% to a record high",
     "Investors cheered {co} as the stock climbed {pct}% in heavy trading on {day}."),
    ("mergers", "{co} wins approval for ${amt} billion acquisition",
     "Regulators cleared {co}'s ${amt} billion deal, removing a key uncertainty for investors."),
]
_NEU = [
    ("management", "{co} to hold annual shareholder meeting on {day}",
     "{co} said its annual meeting will take place as scheduled; no changes to the agenda were"
     " announced."),
    ("markets", "{co} shares little changed ahead of {q} report",
     "{co} stock traded flat on {day} as investors awaited the company's {q} figures."),
    ("products", "{co} schedules product event for {day}",
     "{co} sent invitations for an event on {day}; details were not disclosed."),
    ("analyst", "Analyst keeps neutral rating on {co}, target unchanged",
     "A broker reiterated its hold rating on {co} and left its price target at ${amt}0."),
    ("earnings", "{co} confirms date for {q} earnings release",
     "{co} will publish {q} results after the market close on {day}, the company said."),
]
_NEG = [
    ("legal", "{co} faces regulatory probe over accounting practices",
     "Regulators opened an investigation into {co}'s accounting, sending the shares down {pct}%."),
    ("earnings", "{co} misses estimates and cuts full-year outlook",
     "{co} reported weaker-than-expected results and slashed its {q} guidance, blaming falling"
     " demand."),
    ("products", "{co} recalls {amt}00,000 devices over safety defect",
     "{co} is recalling {amt}00,000 units after reports of overheating and fires, "
     "a costly setback."),
    ("management", "{co} chief financial officer resigns abruptly amid scandal",
     "The sudden departure of {co}'s CFO deepened concerns about governance; "
     "shares slumped {pct}%."),
    ("markets", "{co} shares plunge {pct}% after fraud allegations",
     "{co} stock tumbled {pct}% as a short seller accused the company of fraud and hidden losses."),
    ("legal", "{co} hit with ${amt} billion lawsuit over data breach",
     "Customers sued {co} for ${amt} billion after a massive data breach exposed millions of"
     " records."),
]
_COMMENTS = {
    "positive": ["${t} looking strong, adding more today", "great quarter from {co}, holding long",
                 "{co} is crushing it, {pct}% up and still cheap", "bullish on ${t} into {q}",
                 "love the new {co} launch, buying calls"],
    "neutral": ["anyone following ${t} today?", "{co} earnings on {day}, waiting to see",
                "holding my ${t} position for now", "what do you think about {co} this {q}?",
                "${t} volume looks normal today"],
    "negative": ["{co} is a disaster, selling everything", "${t} dumping hard, this is ugly",
                 "terrible news for {co}, lost {pct}% today", "{co} management has lost all"
                                                              " credibility",
                 "getting out of ${t}, this fraud story is bad"],
}
_SPIKE_NEWS = [
    ("legal", "{co} under investigation for fraud, shares collapse {pct}%",
     "Prosecutors raided {co}'s offices over suspected fraud; the stock collapsed {pct}% and"
     " trading was halted."),
    ("legal", "{co} accused of hiding billions in losses, regulators say",
     "Regulators said {co} concealed ${amt} billion of losses; the company faces heavy fines and"
     " lawsuits."),
    ("markets", "{co} stock crashes as auditor resigns over accounting scandal",
     "{co}'s auditor quit citing serious irregularities, and the shares crashed "
     "{pct}% in minutes."),
    ("management", "{co} CEO arrested in fraud probe, shares in free fall",
     "{co}'s chief executive was detained in a widening fraud investigation; investors fled the"
     " stock."),
]
_SPIKE_COMMENTS = [
    "{co} fraud?! selling all my ${t} now", "${t} is collapsing, this is a catastrophe",
    "{co} lied to investors, terrible, lost everything", "get out of ${t} before it goes to zero",
    "{co} scandal is horrible, shares crashing",
]


_ZH_POS = [
    ("earnings", "{co}前三季度净利润同比增长{pct}%，超出市场预期",
     "{co}发布业绩公告，营业收入与净利润均实现较快增长，毛利率同比提升。"),
    ("analyst", "券商维持{co}“买入”评级，目标价上调{pct}%",
     "研报指出，{co}订单饱满、产品结构持续优化，上调未来两年盈利预测。"),
    ("capital", "{co}拟回购不超过{amt}亿元股份，彰显发展信心",
     "{co}公告称，将以自有资金回购公司股份，用于员工持股计划。"),
    ("contracts", "{co}中标{amt}亿元重大项目，订单规模创新高",
     "{co}公告，公司近日收到中标通知书，项目金额约占上年营收的{pct}%。"),
]
_ZH_NEU = [
    ("management", "{co}将于{day}召开年度股东大会",
     "{co}公告，股东大会将审议年度报告、利润分配方案等议案。"),
    ("earnings", "{co}披露{q}报告编制进展，预计按期发布",
     "{co}表示，{q}报告将于规定期限内披露，目前各项工作正常推进。"),
    ("management", "{co}完成工商变更登记手续",
     "{co}公告称，公司已完成注册资本变更的工商登记，并取得新的营业执照。"),
    ("markets", "{co}今日股价窄幅震荡，成交量与前日基本持平",
     "{co}盘中波动有限，市场关注后续{q}数据。"),
]
_ZH_NEG = [
    ("earnings", "{co}{q}净利润同比下降{pct}%，低于市场预期",
     "{co}业绩承压，公司称原材料成本上升与需求疲软拖累盈利。"),
    ("legal", "{co}收到交易所问询函，要求说明关联交易",
     "交易所要求{co}就大额关联交易的必要性与定价公允性作出说明。"),
    ("capital", "{co}控股股东拟减持不超过{pct}%股份",
     "{co}公告，控股股东计划在未来三个月内通过集中竞价方式减持。"),
]
_ZH_POSTS = {
    "positive": ["{co}业绩超预期，继续持有", "看好{co}，今天又加仓了", "{co}走势很强，主力在进场",
                 "${co}({code})$ 长期价值投资，拿住不动"],
    "neutral": ["{co}今天横盘，继续观望", "有人关注{co}吗？明天开股东大会", "{co}成交量一般，等等看",
                "{co}的{q}报告什么时候出？"],
    "negative": ["{co}又跌了，套牢了😭", "{co}这走势太恶心了，割肉了", "{co}管理层太让人失望",
                 "${co}({code})$ 利空不断，赶紧跑"],
}
_ZH_SPIKE_NEWS = [
    ("legal", "{co}涉嫌信息披露违法违规被证监会立案调查，股价跌停",
     "{co}公告，公司收到中国证监会《立案告知书》，因涉嫌信息披露违法违规被立案调查；"
     "公司股票开盘即告跌停。"),
    ("legal", "{co}被曝财务造假，审计机构拒绝出具意见",
     "审计机构对{co}年报出具无法表示意见的审计报告，公司面临退市风险警示。"),
    ("management", "{co}董事长被留置调查，公司股价闪崩{pct}%",
     "{co}公告称，公司董事长因涉嫌严重违纪违法被监察机关留置，股价盘中闪崩。"),
]
_ZH_SPIKE_POSTS = [
    "{co}造假？全部清仓了，太坑了", "{co}跌停了，血亏，再也不碰了", "{co}被立案调查，赶紧跑吧",
    "${co}({code})$ 完了，明天还要跌停", "{co}管理层骗人，亏惨了😭😭",
]


@dataclass(frozen=True)
class SpikeSpec:
    ticker: str = "TSLA"
    at_s: float = 15.5 * 3600  # seconds after the feed's start
    duration_s: float = 240.0
    items: int = 40


@dataclass(frozen=True)
class FeedSpec:
    start: datetime = field(default_factory=lambda: datetime(2026, 11, 27, tzinfo=UTC))
    duration_s: float = 24 * 3600
    items: int = 3000
    companies: tuple[tuple[str, str], ...] = COMPANIES
    comment_share: float = 0.55
    copy_share: float = 0.03  # syndicated copies of news stories
    invalid_share: float = 0.0  # malformed messages (tests: DLQ)
    spike: SpikeSpec | None = field(default_factory=SpikeSpec)
    # intended sentiment mix outside the spike (negative, neutral, positive)
    mix: tuple[float, float, float] = (0.2, 0.45, 0.35)
    seed: int = 7
    run: str = ""  # prefix of every item id (default: "s<seed>"), so runs never share doc ids
    # Chinese: this share of the regular items is about COMPANIES_ZH, written in Chinese, a
    # third of them without a ``lang`` tag (ingest detects the script)
    companies_zh: tuple[tuple[str, str], ...] = COMPANIES_ZH
    zh_share: float = 0.0
    spike_zh: SpikeSpec | None = None


@dataclass
class FeedItem:
    kind: str  # "news" | "comment"
    key: bytes | None
    value: bytes
    published_at: datetime
    meta: dict

    def to_json(self) -> str:
        try:
            value: object = json.loads(self.value)
            env = {"kind": self.kind, "key": self.key.decode() if self.key else None,
                   "value": value}
        except (UnicodeDecodeError, json.JSONDecodeError):
            import base64

            env = {"kind": self.kind, "key": self.key.decode() if self.key else None,
                   "value_b64": base64.b64encode(self.value).decode()}
        env["ts"] = self.published_at.isoformat()
        env["meta"] = self.meta
        return json.dumps(env, ensure_ascii=False)


def _canon(text: str) -> str:
    return " ".join(re.sub(r"[\W_]+", " ", text.lower()).split())


def _volume_weight(hour: float) -> float:
    """Relative activity by hour (UTC standing in for exchange time): open and close peaks."""
    base = 0.25 + 0.75 * math.exp(-((hour - 14.5) / 4.0) ** 2)
    open_peak = 0.5 * math.exp(-((hour - 9.5) / 0.8) ** 2)
    close_peak = 0.4 * math.exp(-((hour - 16) / 0.7) ** 2)
    return base + open_peak + close_peak


def _times(rng: random.Random, spec: FeedSpec, n: int) -> list[float]:
    grid = [_volume_weight(h / 4) for h in range(96)]  # quarter hours
    total = sum(grid)
    out: list[float] = []
    span = spec.duration_s
    for _ in range(n):
        r = rng.random() * total
        acc = 0.0
        for i, g in enumerate(grid):
            acc += g
            if acc >= r:
                out.append((i + rng.random()) / 96 * span)
                break
        else:  # pragma: no cover - float rounding
            out.append(rng.random() * span)
    return sorted(out)


def _fill(tpl: str, rng: random.Random, ticker: str, name: str) -> str:
    return tpl.format(co=name, t=ticker,
                      pct=rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14, 18, 23]),
                      q=rng.choice(["Q1", "Q2", "Q3", "Q4", "first-half", "full-year"]),
                      day=rng.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]),
                      amt=rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25]))


def _fill_zh(tpl: str, rng: random.Random, ticker: str, name: str) -> str:
    num, _, exchange = ticker.partition(".")
    # the 股吧 spellings: SH600519 / SZ000001 for A-shares, the five-digit 02318 for HK
    code = exchange + num if exchange in ("SH", "SZ") else num.zfill(5)
    return tpl.format(co=name, code=code, pct=rng.choice([3, 5, 8, 10, 12, 15, 18, 21, 26, 32]),
                      q=rng.choice(["一季度", "半年度", "三季度", "年度"]),
                      day=rng.choice(["下周一", "本月20日", "5月18日", "6月28日", "下周五"]),
                      amt=rng.choice([2, 3, 5, 8, 10, 12, 15, 20, 30]))


def generate(spec: FeedSpec) -> list[FeedItem]:
    """The feed, sorted by publication time."""
    rng = random.Random(spec.seed)
    run = spec.run or f"s{spec.seed}"
    items: list[FeedItem] = []
    texts_seen: set[str] = set()
    seq = 0

    def unique(make) -> tuple[str, str]:
        # distinct after case and punctuation are ignored: otherwise ingest rightly takes two
        # items for copies of one story, and the feed would hide duplicates it did not mean
        for _ in range(50):
            title, body = make()
            key = _canon(title + " " + body)
            if key not in texts_seen:
                texts_seen.add(key)
                return title, body
        # templates exhausted: a distinguishing detail keeps the story distinct
        n = len(texts_seen)
        texts_seen.add(f"{n}")
        return (title, f"{body} Update {n}.") if body else (f"{title} (update {n})", body)

    def news(t_s: float, ticker: str, name: str, label: str, tpl, in_spike: bool) -> FeedItem:
        nonlocal seq
        seq += 1
        topic, title_t, body_t = tpl
        title, body = unique(lambda: (_fill(title_t, rng, ticker, name),
                                      _fill(body_t, rng, ticker, name)))
        source = rng.choice(NEWS_SOURCES)
        pub = spec.start + timedelta(seconds=t_s)
        msg = {"id": f"{run}-n{seq:06d}", "source": source, "published_at": pub.isoformat(),
               "title": title, "body": body, "tickers": [ticker], "lang": "en",
               "url": f"https://{source}.example/{ticker.lower()}/{seq}"}
        return FeedItem("news", ticker.encode(), json.dumps(msg).encode(), pub,
                        {"ticker": ticker, "label": label, "topic": topic, "spike": in_spike})

    def comment(t_s: float, ticker: str, name: str, label: str, tpl: str,
                in_spike: bool) -> FeedItem:
        nonlocal seq
        seq += 1
        text, _ = unique(lambda: (_fill(tpl, rng, ticker, name)
                                  + rng.choice(["", " imo", " tbh", " for sure", " honestly"])
                                  + rng.choice(["", "!", " ..."]), ""))
        pub = spec.start + timedelta(seconds=t_s)
        msg = {"id": f"{run}-c{seq:06d}", "source": rng.choice(COMMENT_SOURCES),
               "published_at": pub.isoformat(), "text": text,
               "author": f"user{rng.randint(1, 5000)}", "ticker": ticker, "lang": "en"}
        return FeedItem("comment", ticker.encode(), json.dumps(msg).encode(), pub,
                        {"ticker": ticker, "label": label, "topic": None, "spike": in_spike})

    def news_zh(t_s: float, ticker: str, name: str, label: str, tpl, in_spike: bool
                ) -> FeedItem:
        nonlocal seq
        seq += 1
        topic, title_t, body_t = tpl
        title, body = unique(lambda: (_fill_zh(title_t, rng, ticker, name),
                                      _fill_zh(body_t, rng, ticker, name)))
        source = rng.choice(NEWS_SOURCES_ZH)
        pub = spec.start + timedelta(seconds=t_s)
        msg = {"id": f"{run}-z{seq:06d}", "source": source, "published_at": pub.isoformat(),
               "title": title, "body": body,
               "url": f"https://{source}.example/{ticker.lower()}/{seq}"}
        if rng.random() < 0.67:
            msg["lang"] = "zh-CN"
        return FeedItem("news", ticker.encode(), json.dumps(msg, ensure_ascii=False).encode(),
                        pub, {"ticker": ticker, "label": label, "topic": topic,
                              "spike": in_spike, "lang": "zh"})

    def post_zh(t_s: float, ticker: str, name: str, label: str, tpl: str, in_spike: bool
                ) -> FeedItem:
        nonlocal seq
        seq += 1
        text, _ = unique(lambda: (_fill_zh(tpl, rng, ticker, name)
                                  + rng.choice(["", "！", "。", "，大家怎么看", "…"]), ""))
        pub = spec.start + timedelta(seconds=t_s)
        msg = {"id": f"{run}-p{seq:06d}", "source": rng.choice(COMMENT_SOURCES_ZH),
               "published_at": pub.isoformat(), "text": text,
               "author": f"股友{rng.randint(1000, 99999)}"}
        if rng.random() < 0.67:
            msg["lang"] = "zh"
        return FeedItem("comment", ticker.encode(), json.dumps(msg, ensure_ascii=False).encode(),
                        pub, {"ticker": ticker, "label": label, "topic": None,
                              "spike": in_spike, "lang": "zh"})

    # company weights: a few companies are always in the news
    weights = [1.0 / (1 + 0.25 * i) for i in range(len(spec.companies))]
    weights_zh = [1.0 / (1 + 0.25 * i) for i in range(len(spec.companies_zh))]
    spike_n = (spec.spike.items if spec.spike else 0) + (spec.spike_zh.items if spec.spike_zh
                                                          else 0)
    n_invalid = int(round(spec.items * spec.invalid_share))
    n_regular = max(0, spec.items - spike_n - n_invalid)
    labels = ("negative", "neutral", "positive")
    for t_s in _times(rng, spec, n_regular):
        if spec.zh_share and rng.random() < spec.zh_share:
            ticker, name = rng.choices(spec.companies_zh, weights=weights_zh)[0]
            label = rng.choices(labels, weights=spec.mix)[0]
            if rng.random() < spec.comment_share:
                items.append(post_zh(t_s, ticker, name, label, rng.choice(_ZH_POSTS[label]),
                                     False))
            else:
                tpl = rng.choice({"negative": _ZH_NEG, "neutral": _ZH_NEU,
                                  "positive": _ZH_POS}[label])
                items.append(news_zh(t_s, ticker, name, label, tpl, False))
            continue
        # without Chinese items the random stream is the one this feed always drew
        ticker, name = rng.choices(spec.companies, weights=weights)[0]
        label = rng.choices(labels, weights=spec.mix)[0]
        if rng.random() < spec.comment_share:
            items.append(comment(t_s, ticker, name, label, rng.choice(_COMMENTS[label]), False))
        else:
            tpl = rng.choice({"negative": _NEG, "neutral": _NEU, "positive": _POS}[label])
            items.append(news(t_s, ticker, name, label, tpl, False))
    if spec.spike:
        sp = spec.spike
        name = dict(spec.companies).get(sp.ticker, sp.ticker)
        for i in range(sp.items):
            t_s = sp.at_s + sp.duration_s * (i + rng.random()) / sp.items
            if i % 2 == 0:
                items.append(news(t_s, sp.ticker, name, "negative", rng.choice(_SPIKE_NEWS), True))
            else:
                items.append(comment(t_s, sp.ticker, name, "negative", rng.choice(_SPIKE_COMMENTS),
                                     True))
    if spec.spike_zh:
        sp = spec.spike_zh
        name = dict(spec.companies_zh).get(sp.ticker, sp.ticker)
        for i in range(sp.items):
            t_s = sp.at_s + sp.duration_s * (i + rng.random()) / sp.items
            if i % 2 == 0:
                items.append(news_zh(t_s, sp.ticker, name, "negative",
                                     rng.choice(_ZH_SPIKE_NEWS), True))
            else:
                items.append(post_zh(t_s, sp.ticker, name, "negative",
                                     rng.choice(_ZH_SPIKE_POSTS), True))
    # syndicated copies: the same story from another wire, a little later
    news_items = [it for it in items if it.kind == "news" and not it.meta["spike"]
                  and it.meta.get("lang") != "zh"]
    n_copies = int(round(len(news_items) * spec.copy_share))
    for orig in rng.sample(news_items, min(n_copies, len(news_items))):
        seq += 1
        msg = json.loads(orig.value)
        src = rng.choice([s for s in NEWS_SOURCES if s != msg["source"]])
        pub = orig.published_at + timedelta(seconds=rng.randint(30, 600))
        copy = dict(msg, id=f"{run}-n{seq:06d}", source=src, published_at=pub.isoformat(),
                    title=msg["title"] + " - Reuters", url=f"https://{src}.example/copy/{seq}")
        items.append(FeedItem("news", orig.key, json.dumps(copy).encode(), pub,
                              dict(orig.meta, copy_of=msg["id"], copy_source=msg["source"])))
    for _ in range(n_invalid):
        items.append(_invalid(rng, spec))
    items.sort(key=lambda it: it.published_at)
    return items


def _invalid(rng: random.Random, spec: FeedSpec) -> FeedItem:
    pub = spec.start + timedelta(seconds=rng.random() * spec.duration_s)
    kind = rng.choice(["news", "comment"])
    choice = rng.randrange(4)
    if choice == 0:
        value, reason = b'{"id": "broken", "title": "unterminated', "invalid_json"
    elif choice == 1:
        value, reason = b"\xff\xfe not utf-8 \xc3\x28", "not_utf8"
    elif choice == 2:  # valid JSON, wrong schema (no title / no text)
        value = json.dumps({"id": f"bad-{rng.randint(0, 10**9)}", "source": "reuters",
                            "published_at": pub.isoformat()}).encode()
        reason = "schema"
    else:
        value, reason = b"[1, 2, 3]", "not_object"
    return FeedItem(kind, None, value, pub, {"invalid": reason, "spike": False, "ticker": None,
                                            "label": None, "topic": None})


def write_jsonl(items: Iterable[FeedItem], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for it in items:
            fh.write(it.to_json() + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> Iterator[FeedItem]:
    """Read a feed file: our envelope lines (``kind``/``value``/``ts``), or bare NewsIn /
    CommentIn objects (``title`` means news, ``text`` a comment; ``published_at`` the time)."""
    import base64

    from services.core.schemas import _aware

    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from exc
            if isinstance(obj, dict) and ("value" in obj or "value_b64" in obj) and "kind" in obj:
                value = (base64.b64decode(obj["value_b64"]) if "value_b64" in obj
                         else json.dumps(obj["value"], ensure_ascii=False).encode())
                key = obj.get("key")
                ts = obj.get("ts")
                kind = obj["kind"]
                meta = obj.get("meta") or {}
            elif isinstance(obj, dict):
                value, key, meta = raw.strip(), obj.get("ticker"), {}
                kind = "news" if "title" in obj else "comment"
                ts = obj.get("published_at")
            else:
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            if kind not in ("news", "comment"):
                raise ValueError(f"{path}:{lineno}: kind must be news or comment, got {kind!r}")
            try:
                when = _aware(datetime.fromisoformat(ts)) if ts else datetime.now(UTC)
            except (TypeError, ValueError):
                when = datetime.now(UTC)
            yield FeedItem(kind, key.encode() if isinstance(key, str) else None, value, when, meta)
