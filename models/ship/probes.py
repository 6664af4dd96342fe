"""Probe texts: the rebuilt model must reproduce the probabilities recorded at pack time.

Hashes prove the files are the packed ones; the probes prove the *model* is: a base that
hashes right but loads differently (another transformers version reading it another way), a
bug in the rebuild or a tampered manifest all show as probabilities that moved. The texts are
written for this purpose (generic finance sentences of every class, tweet and headline
style, plus the odd inputs the predictor promises to score), never taken from any data set.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

PROBE_TEXTS: tuple[str, ...] = (
    "Shares of the regional lender fell 12% after it disclosed a surprise quarterly loss.",
    "The retailer cut its full-year outlook, citing weak consumer demand.",
    "Regulators opened an investigation into the insurer's accounting practices.",
    "The chipmaker warned that supply shortages will hurt second-half revenue.",
    "Moody's downgraded the utility's debt to junk, sending bonds lower.",
    "$XYZ plunges premarket as the CEO resigns amid fraud allegations",
    "The airline will lay off 3,000 employees to reduce costs.",
    "Credit card delinquencies rose for a fourth straight quarter.",
    "The company will report third-quarter results on October 24.",
    "The board has scheduled its annual general meeting for May 12 in Frankfurt.",
    "The firm appointed a new chief financial officer effective next month.",
    "The central bank left interest rates unchanged, as expected.",
    "The fund manager holds 4.2% of the company's outstanding shares.",
    "$ABC to present at an industry conference next week",
    "The merger is expected to close in the first half of next year, subject to approvals.",
    "Trading volume in the stock was in line with its 30-day average.",
    "Quarterly revenue rose 18% to a record, beating analyst estimates.",
    "The software maker raised its dividend by 10% and announced a buyback.",
    "Operating profit increased to EUR 42 million from EUR 30 million a year earlier.",
    "The drugmaker's shares jumped after regulators approved its new therapy.",
    "$QRS soars after blowout earnings and upbeat guidance",
    "Analysts upgraded the bank to buy, citing improving loan growth.",
    "The carmaker won a multi-year supply contract worth $2 billion.",
    "Net interest income climbed on higher rates, lifting the lender's margins.",
    "",
    "!!!",
    "某公司第三季度净利润同比增长20%。",
    "Stocks 📉📉 today... not great",
    "Guidance " * 80,  # longer than max_length: scored truncated
    "The company said it expects revenue to be broadly flat next year while it restructures "
    "its European operations, though management cautioned that currency moves could weigh "
    "on reported results.",
)


PROBE_TEXTS_ZH: tuple[str, ...] = (
    "某城商行一季度净利润同比下降35%，不良贷款率升至2.8%。",
    "公司因涉嫌信息披露违法违规被证监会立案调查。",
    "受原材料价格上涨影响，该制造商预计上半年亏损。",
    "评级机构将该开发商的主体信用评级下调至BB级。",
    "这票又跌停了，套得死死的，庄家太狠了",
    "平台逾期兑付，多名投资人报警。",
    "公司将于5月20日召开2024年年度股东大会。",
    "董事会审议通过了关于变更会计师事务所的议案。",
    "公司已完成工商变更登记手续。",
    "今天横盘，成交量一般，继续观望",
    "該公司公佈中期業績，收入與去年持平。",
    "公司发布公告，控股股东所持股份无质押情况。",
    "公司前三季度营收同比增长28%，净利润创历史新高。",
    "公司中标12亿元城市轨道交通项目，占上年营收的15%。",
    "维持“买入”评级，目标价上调至48元。",
    "公司拟以自有资金回购股份，回购金额不低于2亿元。",
    "明天必涨停，主力资金大举进场！！！",
    "$贵州茅台(SH600519)$ 业绩超预期，长期看好",
    "",
    "！！！",
    "The company said quarterly revenue rose 18%.",
    "公司称" * 90,  # longer than max_length: scored truncated
)
"""The Chinese model's probes: written for this purpose like the English ones (every class,
news, announcement, broker-report and forum style, traditional characters, odd inputs)."""


def probe_texts(language: str = "en") -> tuple[str, ...]:
    return PROBE_TEXTS_ZH if language == "zh" else PROBE_TEXTS


def probe_probabilities(checkpoint: Path, texts: tuple[str, ...] | list[str] = PROBE_TEXTS
                        ) -> np.ndarray:
    """fp32 torch probabilities on CPU: the numbers the evaluation and the ONNX backend match."""
    from models.sentiment.predictor import SentimentModel

    model = SentimentModel.from_checkpoint(checkpoint, device="cpu", backend="fp32")
    probs, _ = model.predict_proba(list(texts), batch_size=64)
    return probs


def compare(expected: np.ndarray, got: np.ndarray) -> dict:
    """Label agreement and the largest probability difference between two runs."""
    if expected.shape != got.shape:
        return {"n": int(len(got)), "agreement": 0.0, "max_abs_diff": float("inf"),
                "label_changes": int(len(got))}
    same = expected.argmax(1) == got.argmax(1)
    return {"n": int(len(got)), "agreement": float(same.mean()) if len(got) else 1.0,
            "max_abs_diff": float(np.abs(expected - got).max()) if len(got) else 0.0,
            "label_changes": int((~same).sum())}
