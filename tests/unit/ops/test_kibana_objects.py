"""Kibana cannot run here, so the saved objects are checked structurally: every line parses,
string-encoded JSON fields parse, every reference resolves, and every field a visualization,
saved search or data view uses exists in the index template's mappings."""
from __future__ import annotations

import json
import re
import subprocess
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from services.stream.es_layout import ALERT_PROPERTIES, ANNOTATION_PROPERTIES, DOC_PROPERTIES

ROOT = Path(__file__).resolve().parents[3]
KIBANA = ROOT / "ops" / "kibana"
STRING_JSON = {"visState", "uiStateJSON", "panelsJSON", "optionsJSON", "searchSourceJSON",
               "fieldFormatMap", "fields", "fieldAttrs", "runtimeFieldMap", "sourceFilters"}
DATA_VIEW_FIELDS = {"yuqing-docs": DOC_PROPERTIES, "yuqing-alerts": ALERT_PROPERTIES,
                    "yuqing-annotations": ANNOTATION_PROPERTIES}


def flatten(props: dict[str, Any], prefix: str = "") -> set[str]:
    """Every field path of a mapping, including multi-fields (title.keyword)."""
    out: set[str] = set()
    for name, spec in props.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            out |= flatten(spec["properties"], f"{path}.")
        else:
            out.add(path)
            for sub in spec.get("fields", {}):
                out.add(f"{path}.{sub}")
    return out


def load() -> list[dict[str, Any]]:
    files = sorted(KIBANA.glob("*.ndjson"))
    assert files, "no saved objects in ops/kibana"
    objects = []
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                objects.append(json.loads(line))
            except json.JSONDecodeError as exc:
                pytest.fail(f"{f.name}:{n}: not JSON: {exc}")
    return objects


def decode_strings(obj: Any, path: str = "") -> dict[str, Any]:
    """Parse every string-encoded JSON attribute, keyed by its path."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in STRING_JSON and isinstance(v, str):
                out[f"{path}.{k}"] = json.loads(v)
            else:
                out |= decode_strings(v, f"{path}.{k}")
    return out


OBJECTS = load()
BY_KEY = {(o["type"], o["id"]): o for o in OBJECTS}
DATA_VIEWS = {o["id"]: o["attributes"]["title"] for o in OBJECTS if o["type"] == "index-pattern"}


def test_ids_are_unique_and_required_types_present():
    assert len(BY_KEY) == len(OBJECTS)
    types = {o["type"] for o in OBJECTS}
    assert {"index-pattern", "visualization", "search", "dashboard"} <= types
    assert set(DATA_VIEWS.values()) == {"yuqing-docs", "yuqing-alerts", "yuqing-annotations"}


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: o["id"])
def test_string_encoded_fields_parse(obj):
    decoded = decode_strings(obj["attributes"])
    assert decoded or obj["type"] == "index-pattern"


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: o["id"])
def test_every_reference_resolves(obj):
    names = {r["name"] for r in obj.get("references", [])}
    for ref in obj.get("references", []):
        assert (ref["type"], ref["id"]) in BY_KEY, f"{obj['id']}: dangling reference {ref}"
    decoded = decode_strings(obj["attributes"])
    for key, value in decoded.items():
        if key.endswith("searchSourceJSON") and "indexRefName" in value:
            assert value["indexRefName"] in names
        if key.endswith("panelsJSON"):
            assert value, "dashboard without panels"
            for panel in value:
                assert panel["panelRefName"] in names, panel


def _fields_used(obj: dict[str, Any]) -> set[str]:
    attrs = obj["attributes"]
    used: set[str] = set()
    decoded = decode_strings(attrs)
    for key, value in decoded.items():
        if key.endswith("visState"):
            for a in value["aggs"]:
                if "field" in a["params"]:
                    used.add(a["params"]["field"])
        if key.endswith("searchSourceJSON"):
            query = value.get("query", {}).get("query", "")
            used |= set(re.findall(r"([A-Za-z_][\w.]*)\s*:", query))
    if obj["type"] == "search":
        used |= set(attrs.get("columns", []))
        used |= {s[0] for s in attrs.get("sort", [])}
    if obj["type"] == "index-pattern":
        used.add(attrs["timeFieldName"])
        used |= set(json.loads(attrs.get("fieldFormatMap", "{}")))
    return used


def _data_view_of(obj: dict[str, Any]) -> str:
    if obj["type"] == "index-pattern":
        return obj["attributes"]["title"]
    refs = [r for r in obj["references"] if r["type"] == "index-pattern"]
    assert len(refs) == 1, obj["id"]
    return DATA_VIEWS[refs[0]["id"]]


@pytest.mark.parametrize("obj", [o for o in OBJECTS if o["type"] != "dashboard"],
                         ids=lambda o: o["id"])
def test_every_field_exists_in_the_template_mappings(obj):
    fields = flatten(DATA_VIEW_FIELDS[_data_view_of(obj)])
    used = _fields_used(obj)
    assert used, f"{obj['id']} uses no field?"
    missing = used - fields
    assert not missing, f"{obj['id']}: fields not in the index template: {sorted(missing)}"


def test_dashboard_has_the_required_panels():
    dash = next(o for o in OBJECTS if o["type"] == "dashboard")
    titles = {BY_KEY[(r["type"], r["id"])]["attributes"]["title"].lower()
              for r in dash["references"]}
    for wanted in ("over time per entity", "negative share", "top negative documents",
                   "source mix", "alerts timeline", "model changes"):
        assert any(wanted in t for t in titles), wanted


def test_flatten_sees_nested_and_multi_fields():
    fields = flatten(DOC_PROPERTIES)
    assert {"sentiment.label", "title.keyword", "published_at"} <= fields
    assert "sentiment" not in fields


class _Kibana(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        msg = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
        files = [p.get_payload(decode=True) for p in msg.iter_parts()]
        self.received.append({"path": self.path, "xsrf": self.headers.get("kbn-xsrf"),
                              "files": files})
        out = json.dumps({"success": True, "successCount": len(files[0].splitlines())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


def test_import_script_posts_every_file_to_the_saved_objects_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Kibana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        env = {"PATH": "/usr/bin:/bin", "KIBANA_SPACE": "risk",
               "YUQING_NAMESPACE": "acme"}
        proc = subprocess.run([str(KIBANA / "import"), url], capture_output=True, text=True,
                              env=env, timeout=60)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    files = sorted(KIBANA.glob("*.ndjson"))
    assert len(_Kibana.received) == len(files)
    for got in _Kibana.received:
        assert got["path"] == "/s/risk/api/saved_objects/_import?overwrite=true"
        assert got["xsrf"] == "true"
        sent = [json.loads(line) for line in got["files"][0].decode().splitlines()]
        titles = {o["attributes"]["title"] for o in sent if o["type"] == "index-pattern"}
        assert titles == {"acme-docs", "acme-alerts", "acme-annotations"}
    assert "imported" in proc.stdout
