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
