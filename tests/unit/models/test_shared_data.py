"""Checks on the shared tweet corpus; skipped where ../shared/data is absent."""
import pytest

from models.finetune.datasets import TWEETS_LABEL_MAP, class_balance, read_examples

from .conftest import SHARED_DATA

TWEETS = SHARED_DATA / "twitter-financial-news-sentiment"


@pytest.mark.skipif(not (TWEETS / "valid.csv").is_file(),
                    reason="../shared/data/twitter-financial-news-sentiment not present")
def test_tweets_label_order_is_mapped_by_name():
    exs = read_examples(TWEETS / "valid.csv", label_map=TWEETS_LABEL_MAP)
    bal = class_balance(exs)
    assert bal["neutral"] > bal["positive"] > bal["negative"] > 0
