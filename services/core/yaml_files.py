"""Reading YAML configuration files (watchlist, taxonomy) with errors that
say which file is wrong and which setting points at it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.core.errors import ConfigError


def load_yaml(path: Path, what: str, env: str) -> Any:
    """Parse ``path``; ``what`` names the file in errors, ``env`` is the setting to fix it with."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc}); set {env} to a readable YAML file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: invalid YAML: {exc}") from exc
