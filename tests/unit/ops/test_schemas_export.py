"""ops/schemas/*.json are what `yuqing schemas export` writes, and they accept/refuse what the
pydantic models accept/refuse (producers in other languages validate with them)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs  # comes with schemathesis (dev dependency)
import pytest

from services.api.schemas_export import CONTRACTS, stale

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "ops" / "schemas"


def test_checked_in_schemas_are_current():
    assert stale(SCHEMAS) == [], "run `yuqing schemas export` and commit ops/schemas/"
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(CONTRACTS)


def _validator(name: str):
    return jsonschema_rs.validator_for(json.loads((SCHEMAS / name).read_text()))


@pytest.mark.parametrize("name,doc,ok", [
    ("news_in.json", {"id": "1", "source": "wire", "published_at": "2026-03-02T10:00:00Z",
                      "title": "Acme beats", "tickers": ["ACME"]}, True),
    ("news_in.json", {"id": "1", "source": "wire", "published_at": "2026-03-02T10:00:00Z"},
     False),
    ("news_in.json", {"id": "has space", "source": "wire", "title": "t",
                      "published_at": "2026-03-02T10:00:00Z"}, False),
    ("comment_in.json", {"id": "c", "source": "forum", "published_at": "2026-03-02T10:00:00Z",
                         "text": "hi", "author": "me", "ticker": "$ACME"}, True),
    ("comment_in.json", {"id": "c", "source": "forum", "published_at": "2026-03-02T10:00:00Z",
                         "text": "hi"}, False),
])
def test_schemas_match_the_models(name, doc, ok):
    model = CONTRACTS[name][0]
    errors = list(_validator(name).iter_errors(doc))
    assert (not errors) is ok, errors
    if ok:
        model.model_validate(doc)
    else:
        with pytest.raises(ValueError):
            model.model_validate(doc)
