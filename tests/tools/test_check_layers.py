"""tools/check_layers.py passes on the project and catches each kind of forbidden import."""

from __future__ import annotations

from pathlib import Path

from tools.check_layers import main, violations

ROOT = Path(__file__).resolve().parents[2]


def make_tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name in ("node", "mesh", "storage", "engine"):
        (tmp_path / name).mkdir()
    for rel, text in files.items():
        (tmp_path / rel).write_text(text, encoding="utf-8")
    return tmp_path


def test_the_project_keeps_the_dependency_rule():
    assert violations(ROOT) == []


def test_upward_and_sideways_imports_are_violations(tmp_path):
    root = make_tree(tmp_path, {
        "storage/a.py": "import mesh.core\n",
        "engine/b.py": "from node import cli\n",
        "mesh/c.py": "from engine.rules import x\n",
        "engine/d.py": "import sqlite3\n",
        "node/ok.py": "import mesh, storage, engine\n",
        "mesh/ok.py": "from storage import x\nfrom . import y\n",
    })
    found = violations(root)
    assert len(found) == 4
    assert any("storage/a.py:1: storage imports mesh.core" in f for f in found)
    assert any("engine/d.py:1: engine imports sqlite3" in f for f in found)
    assert main([str(root)]) == 1
