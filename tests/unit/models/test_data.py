import json

import pytest

from models.finetune.datasets import (
    TWEETS_LABEL_MAP,
    DataError,
    Example,
    class_balance,
    dedupe,
    parse_label_map,
    read_examples,
    stratified_split,
)
from models.text import LABELS


def test_label_map_by_name(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\nstock falls,0\nstock rises,1\nstock flat,2\n")
    exs = read_examples(p, label_map=TWEETS_LABEL_MAP)
    assert [e.label for e in exs] == ["negative", "positive", "neutral"]
    assert [e.line for e in exs] == [2, 3, 4]


def test_unknown_label_names_file_and_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\nok,0\nbad one,7\n")
    with pytest.raises(DataError, match=r"t\.csv:3: unknown label '7'"):
        read_examples(p, label_map=TWEETS_LABEL_MAP)


def test_jsonl_errors_name_line(tmp_path):
    p = tmp_path / "n.jsonl"
    p.write_text(json.dumps({"text": "a", "label": "positive"}) + "\n{not json\n")
    with pytest.raises(DataError, match=r"n\.jsonl:2: malformed JSON"):
        read_examples(p)
    p.write_text(json.dumps({"text": "", "label": "positive"}) + "\n")
    with pytest.raises(DataError, match=r"n\.jsonl:1: empty text"):
        read_examples(p)
    p.write_text(json.dumps({"text": "x", "label": "bullishish"}) + "\n")
    with pytest.raises(DataError, match=r"n\.jsonl:1: unknown label"):
        read_examples(p)


def test_malformed_csv_and_missing_column(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("text,label\nfine,0\ntoo,many,fields\n")
    with pytest.raises(DataError, match=r"m\.csv:3: malformed row"):
        read_examples(p, label_map=TWEETS_LABEL_MAP)
    p.write_text("body,label\nx,0\n")
    with pytest.raises(DataError, match=r"m\.csv:1: .*lacks column"):
        read_examples(p)


def test_skip_mode_and_url_only_rows(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("text,label\ngood,negative\nbad,9\nhttps://t.co/x,neutral\n")
    exs = read_examples(p, on_error="skip")
    assert [e.text for e in exs] == ["good"]


def test_parse_label_map_rejects_bad_names():
    assert parse_label_map("0=bearish,1=bullish,2=neutral") == {
        "0": "negative", "1": "positive", "2": "neutral"}
    with pytest.raises(DataError, match="not one of"):
        parse_label_map("0=angry")
    with pytest.raises(DataError, match="RAW=NAME"):
        parse_label_map("0negative")


def test_dedupe_duplicates_conflicts_and_eval_overlap():
    exs = [Example("A  b", "positive"), Example("a b", "positive"), Example("c", "negative"),
           Example("c", "neutral"), Example("eval text", "neutral"), Example("d", "neutral")]
    out, rep = dedupe(exs, exclude_texts=["Eval  text"])
    assert [e.text for e in out] == ["A  b", "d"]
    assert (rep.exact_duplicates, rep.conflicting_texts, rep.excluded_overlap) == (1, 2, 1)


def test_stratified_split_deterministic_and_stratified():
    exs = [Example(f"t{i}", LABELS[i % 3 if i < 60 else 1]) for i in range(100)]
    a = stratified_split(exs, 0.2, seed=7)
    b = stratified_split(exs, 0.2, seed=7)
    c = stratified_split(exs, 0.2, seed=8)
    assert a == b and a != c
    train, dev = a
    assert len(train) + len(dev) == 100 and not {e.text for e in train} & {e.text for e in dev}
    bal, full = class_balance(dev), class_balance(exs)
    for lab in LABELS:
        assert abs(bal[lab] - 0.2 * full[lab]) <= 1
