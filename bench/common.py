"""Shared benchmark helpers: synthetic financial headlines and process memory.

The benchmarks use generated text instead of the shared dataset so that they run
anywhere (CI, a bare GPU box) and every run sees the same inputs for a given seed.
Lengths are varied on purpose (short tickers-only posts up to long ledes) because
padding waste and length bucketing only show up on mixed lengths.
"""
from __future__ import annotations

import os
import platform
import random

import psutil

_COMPANIES = [
    "Apple", "Tesla", "Nvidia", "Microsoft", "Alibaba", "Tencent", "HSBC", "Barclays",
    "Siemens", "Toyota", "Samsung", "JPMorgan", "Goldman Sachs", "BYD", "Ping An",
    "Meituan", "Shell", "BP", "Nestle", "Novartis", "Exxon", "Pfizer", "Amazon", "Meta",
]
_TICKERS = ["$AAPL", "$TSLA", "$NVDA", "$MSFT", "$BABA", "$HSBC", "$TM", "$JPM", "$GS", "$XOM"]
_VERBS_NEG = ["plunges", "slumps", "misses estimates", "cuts guidance", "faces probe",
              "recalls vehicles", "warns on profit", "lays off staff", "is downgraded"]
_VERBS_POS = ["surges", "beats estimates", "raises guidance", "wins contract",
              "posts record profit", "is upgraded", "expands buyback", "rallies"]
_VERBS_NEU = ["reports results", "holds annual meeting", "names new CFO", "files 10-Q",
              "to present at conference", "announces dividend date", "updates product line"]
_TAILS = [
    "after quarterly results", "as analysts reassess outlook", "amid regulatory scrutiny",
    "in pre-market trading", "on strong demand in China", "despite supply chain issues",
    "following a board shake-up", "as rates stay higher for longer",
    "while investors await the Fed decision", "after a report by Reuters",
]
_LEDE = (
    "Shares moved sharply in early trading as investors digested the figures, which "
    "came in against a backdrop of weak consumer demand, currency headwinds and "
    "rising input costs across the sector, according to people familiar with the matter."
)


def headlines(n: int, seed: int = 7) -> list[str]:
    """``n`` synthetic headlines, deterministic for a seed, ~8-60 tokens, 5% exact repeats."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        r = rng.random()
        co = rng.choice(_COMPANIES)
        verb = rng.choice(rng.choice([_VERBS_NEG, _VERBS_POS, _VERBS_NEU]))
        if r < 0.15:  # short social post
            emoji = rng.choice(["🚀", "📉", "lol", ""])
            price = rng.uniform(5, 900)
            out.append(f"{rng.choice(_TICKERS)} {verb} at ${price:.2f}! {emoji}".strip())
        elif r < 0.75:  # headline
            quarter = f"Q{rng.randint(1, 4)} {rng.randint(2015, 2026)}"
            out.append(f"{co} {verb} {rng.choice(_TAILS)} ({quarter})")
        elif r < 0.95:  # headline + tail + number
            out.append(f"{co} {verb} {rng.choice(_TAILS)}; shares {rng.choice(['up', 'down'])} "
                       f"{rng.uniform(0.1, 12):.1f}% to ${rng.uniform(5, 900):.2f}")
        else:  # headline with lede
            out.append(f"{co} {verb} {rng.choice(_TAILS)}. {_LEDE}")
    # Syndicated copies (5%): real feeds repeat stories, which the text cache exploits.
    for i in range(0, n, 20):
        j = rng.randrange(n)
        out[i] = out[j]
    return out


_REACTIONS = ["responds", "shares fall in sympathy", "gains on the news", "declines to comment",
              "seen as the winner", "faces a lawsuit over it"]


def headlines_multi(n: int, seed: int = 7, share: float = 0.3) -> list[str]:
    """``headlines(n, seed)`` with a second company named in ``share`` of the company
    headlines ("Tesla cuts prices ...; BYD responds"): the English entity pair model runs
    only on texts naming two or more linked entities, which ``headlines`` never does."""
    rng = random.Random(seed + 1)
    out = headlines(n, seed)
    for i, t in enumerate(out):
        co = next((c for c in _COMPANIES if t.startswith(c + " ")), None)
        if co is not None and rng.random() < share:
            other = rng.choice([c for c in _COMPANIES if c != co])
            out[i] = f"{t}; {other} {rng.choice(_REACTIONS)}"
    return out


_ZH_COMPANIES = ["华瑞科技", "东岳化工", "鼎盛控股", "贵州茅台", "宁德时代", "招商银行", "腾讯控股",
                 "比亚迪", "中国平安", "美的集团", "海天味业", "长江电力", "恒瑞医药", "紫金矿业"]
_ZH_EVENTS = ["前三季度净利润同比增长28.6%", "上半年营收同比下滑12.3%", "收到证监会立案告知书",
              "控股股东拟减持不超过2%股份", "中标8.6亿元轨道交通项目", "将于下周召开临时股东大会",
              "维持“买入”评级，目标价上调至48元", "发布2025年半年度报告", "债券展期方案获持有人会议通过",
              "拟以自有资金回购股份", "宣布裁员15%以压缩成本", "完成工商变更登记"]
_ZH_POSTS = ["明天必涨停，主力进场了！", "又跌停了，套死了😭", "横盘震荡，继续观望", "这票太妖了，不敢追",
             "业绩超预期，长期看好", "割肉出局，再也不碰了"]
_ZH_LEDE = ("公告显示，公司本期经营活动产生的现金流量净额同比改善，管理层表示将继续推进降本增效，"
            "并加大研发投入，但同时提示原材料价格波动和市场需求变化可能对后续业绩造成影响。")


def headlines_zh(n: int, seed: int = 7) -> list[str]:
    """``n`` synthetic Chinese news titles and 股吧 posts (bench timing only, never training),
    deterministic for a seed, ~10-120 characters, 5% exact repeats."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        r, co = rng.random(), rng.choice(_ZH_COMPANIES)
        # Every variant carries a number or date, so chance collisions stay well under the
        # 5% of deliberate repeats (the worker's text cache must not flatter it).
        if r < 0.3:  # forum post, sometimes with the 股吧 stock tag
            tag = f"${co}(SH{rng.randint(600000, 605000)})$ " if rng.random() < 0.4 else ""
            out.append(f"{tag}{rng.choice(_ZH_POSTS)} 现价{rng.uniform(3, 300):.2f}")
        elif r < 0.85:  # headline
            out.append(f"{co}：{rng.choice(_ZH_EVENTS)}（{rng.randint(2015, 2026)}年"
                       f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日）")
        else:  # headline with lede
            out.append(f"{co}{rng.choice(_ZH_EVENTS)}（{rng.randint(2015, 2026)}年"
                       f"{rng.randint(1, 12)}月）。{_ZH_LEDE}")
    for i in range(0, n, 20):
        out[i] = out[rng.randrange(n)]
    return out


def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss; Linux reports KiB)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if platform.system() == "Linux" else peak / 2**20


def machine() -> dict:
    import torch

    info = {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),  # >cpus: other work shared the cores
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
