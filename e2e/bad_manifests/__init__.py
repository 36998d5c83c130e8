"""The table of bad manifests (cases.yaml): each must be rejected at apply time with its exact error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CASES_FILE = Path(__file__).with_name("cases.yaml")
LAYERS = ("schema", "cel", "webhook")


def load_cases() -> list[dict[str, Any]]:
    """Every case: name, layer, error, manifest and optional setup objects."""
    return yaml.safe_load(CASES_FILE.read_text())
