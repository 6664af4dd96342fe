"""The English pair model's data split and selection (pure parts of
``models.finetune.entity_pair_en``); the serving kind is tested in test_entity_pair.py."""
from __future__ import annotations

import numpy as np

from models.finetune.entity_pair_en import (
    PairSplit,
    _multi,
    english_pair_config,
    pair_rows,
    select_mix,
    split_dev,
)
from models.finetune.sources import EntityExample


def _rows() -> list[EntityExample]:
    out = []
    for d in range(40):
        text = f"Acme{d} sues Beta{d}"
        labels = ("negative", "negative") if d % 2 else ("neutral", "negative")  # odd: not mixed
        for e, lab in zip((f"Acme{d}", f"Beta{d}"), labels, strict=True):
            s = text.find(e)
            out.append(EntityExample(text, e, s, s + len(e), lab, "sentfin", d))
    out.append(EntityExample("Gamma rises", "Gamma", 0, 5, "positive", "finentity", 0))
    return out


def test_dev_is_whole_mixed_sentfin_headlines_kept_out_of_training():
    rows = _rows()
    fit, dev = split_dev(rows, PairSplit(dev_fraction=0.25, seed=0))
    dev_texts, fit_texts = {r.text for r in dev}, {r.text for r in fit}
    assert len(dev_texts) == 5 and not dev_texts & fit_texts  # 25% of the 20 mixed
    assert all(len({r.label for r in rows if r.text == t}) > 1 for t in dev_texts)
    assert len(fit) + len(dev) == len(rows)
    assert split_dev(rows, PairSplit(dev_fraction=0.25, seed=0)) == (fit, dev)  # seeded


def test_only_texts_naming_two_entities_are_the_pair_models_and_pairs_read_as_served():
    rows = _rows()
    cfg = english_pair_config()
    multi = _multi(rows, cfg)
    assert len(multi) == 80 and all(r.source == "sentfin" for r in multi)
    assert pair_rows(multi[:2], cfg, str.upper) == [("Acme0", "ACME0 SUES BETA0"),
                                                   ("Beta0", "ACME0 SUES BETA0")]


def test_select_mix_prefers_the_pair_on_ties_and_follows_the_better_model():
    truth = np.array([0, 1, 2, 0])
    good = np.eye(3, dtype=np.float32)[truth] * 0.8 + 0.2 / 3
    bad = np.roll(good, 1, axis=1)
    assert select_mix(bad, good, truth) == (0.0, 1.0)  # pair right, head wrong
    mix, acc = select_mix(good, bad, truth)
    assert mix > 0.5 and acc == 1.0
    assert select_mix(good, good, truth)[0] == 0.0  # a tie: the pair model


def test_the_model_card_gets_one_entity_section_before_its_limitations(tmp_path):
    from models.finetune.entity_pair_en import CARD_HEADING, write_card

    def result(acc: float) -> dict:
        m = {"accuracy": acc, "macro_f1": acc - 0.01}
        return {"test": "369 held-out mixed SEntFiN headlines, 840 entities (split by headline)",
                "document_label": m, "entity_head": m, "entity_head_and_pair": m,
                "rank": 80, "mix": 0.3}

    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# Model card\n\n## Results\n\n### valid\n\nx\n\n## Limitations\n\nShort.\n")
    write_card(tmp_path, result(0.8))
    write_card(tmp_path, result(0.9))  # a retrain replaces the section
    text = card.read_text()
    assert text.count(CARD_HEADING) == 1 and "0.900" in text and "0.800" not in text
    assert text.index("### valid") < text.index(CARD_HEADING) < text.index("## Limitations")
    assert text.endswith("## Limitations\n\nShort.\n")
