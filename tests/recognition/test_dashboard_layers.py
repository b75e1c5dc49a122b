"""The recognition dashboard's views render and answer; rows come from recognition.selectors and pictures from
recognition.drawing, so no view module builds a query or imports the staff admin."""
from __future__ import annotations

import ast
from pathlib import Path

import recognition.dashboard

DASHBOARD = Path(recognition.dashboard.__file__).parent


def _modules() -> list[tuple[str, ast.Module]]:
    return [(path.name, ast.parse(path.read_text())) for path in sorted(DASHBOARD.glob("*.py"))]


def test_dashboard_views_do_not_import_the_admin():
    for name, tree in _modules():
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not {module for module in imported if module.startswith("recognition.admin")}, name


def test_dashboard_views_build_no_queries():
    """`Model.objects` appears only as the empty placeholder of a form field (`.objects.none()`)."""
    for name, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr in {"objects", "unscoped"}:
                assert node.attr == "none", f"{name}:{node.lineno} builds a query ({node.value.attr}.{node.attr}); use recognition.selectors"
