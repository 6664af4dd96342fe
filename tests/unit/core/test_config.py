"""Settings are read in one place, and the README's table tells the truth about them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.core.config import Settings, env_name
from services.core.settings_doc import markdown_table, readme_section

ROOT = Path(__file__).resolve().parents[3]


def test_every_setting_has_an_env_name_and_description():
    for name, field in Settings.model_fields.items():
        assert env_name(name).startswith("YUQING_"), name
        assert field.description, f"setting {name} needs a description for the README table"


def test_env_overrides_defaults(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YUQING_KAFKA_BOOTSTRAP", "k1:1,k2:2")
    monkeypatch.setenv("YUQING_CLASSIFY_MAX_BATCH", "48")
    s = Settings()
    assert s.kafka_bootstrap == "k1:1,k2:2"
    assert s.classify_max_batch == 48


def test_bad_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YUQING_API_PORT", "not-a-port")
    with pytest.raises(Exception, match="api_port|YUQING_API_PORT"):
        Settings()


def test_readme_table_matches_settings():
    assert readme_section(ROOT / "README.md") == markdown_table(), (
        "README configuration table is stale: run `yuqing config --write-readme`")


def test_only_config_reads_the_environment():
    pattern = re.compile(r"os\.environ(?!\.setdefault\(\"(HF_HUB_OFFLINE|TOKENIZERS_PARALLELISM))|os\.getenv|getenv\(")
    offenders = []
    for pkg in ("services", "models"):
        for path in (ROOT / pkg).rglob("*.py"):
            if path.name == "config.py" and path.parent.name == "core":
                continue
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line) and "env=" not in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "environment read outside services/core/config.py:\n" + "\n".join(offenders)
