"""The OpenAPI document: versioned paths, every /v1 operation behind an API key, and the
committed copy (docs/openapi.json, from `yuqing api --openapi`) up to date."""
from __future__ import annotations

from pathlib import Path

from services.api.app import create_app, openapi_json
from services.core.config import Settings

ROOT = Path(__file__).resolve().parents[3]


def test_paths_are_versioned_and_secured():
    doc = create_app(Settings()).openapi()
    api_paths = [p for p in doc["paths"] if p not in ("/healthz", "/readyz", "/metrics")]
    assert {"/v1/subscriptions", "/v1/trends", "/v1/alerts", "/v1/documents",
            "/v1/feedback"} <= set(api_paths)
    assert all(p.startswith("/v1/") for p in api_paths)
    for path in api_paths:
        for method, op in doc["paths"][path].items():
            assert op.get("security") == [{"APIKeyHeader": []}], (method, path)
            assert "scope:" in op["summary"], (method, path)
    secret_fields = doc["components"]["schemas"]["WebhookChannelOut"]["properties"]["secret"]
    assert secret_fields["default"] == "********"


def test_committed_openapi_document_is_current():
    committed = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert committed == openapi_json(create_app(Settings())), \
        "run `yuqing api --openapi docs/openapi.json`"
