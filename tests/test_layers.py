"""The import contracts in pyproject.toml hold, and really catch a violation (so the layer picture in the
README cannot silently stop being true)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "meson", tmp_path / "meson", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("meson/core/leak.py", "import kubernetes\n", "The scheduling core knows nothing of Kubernetes"),
        ("meson/controllers/leak.py", "import kubernetes.client\n", "One door to the API server"),
        ("meson/adapters/leak.py", "from meson.controllers import store\n", "Layers, from the top"),
        ("meson/api/leak.py", "import kopf\n", "kopf belongs to the operator entry point"),
    ],
)
def test_a_deliberate_violation_breaks_its_contract(
    tree: Path, module: str, line: str, contract: str
) -> None:
    (tree / module).write_text(line)
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    assert "Broken contracts" in result.stdout, result.stdout[-3000:]
    report = result.stdout.split("Broken contracts", 1)[1]
    assert contract in " ".join(report.split()), report[-3000:]


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout[-3000:]
