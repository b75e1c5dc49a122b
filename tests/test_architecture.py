"""The import architecture (.importlinter at the repo root) holds, and its contracts can fail."""
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """Run import-linter on the .importlinter in cwd, without writing its cache into the tree."""
    return subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--no-cache"],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_contracts_are_kept():
    result = _lint_imports(REPO_ROOT)
    assert result.returncode == 0, f"import-linter found broken contracts:\n{result.stdout}\n{result.stderr}"
    assert "Contracts: 2 kept, 0 broken." in result.stdout, result.stdout


def test_contracts_of_the_same_types_fail_on_an_upward_import(tmp_path: Path):
    """A throwaway tree breaks both contract types: a lower layer imports a higher one, an engine imports Django-side code."""
    files = {
        "probe_apps/__init__.py": "",
        "probe_apps/views.py": "import probe_base.models\n",
        "probe_apps/engine/__init__.py": "",
        "probe_apps/engine/core.py": "import probe_apps.views\n",
        "probe_base/__init__.py": "",
        "probe_base/models.py": "from probe_apps import views  # upward\n",
        ".importlinter": (
            "[importlinter]\n"
            "root_packages =\n    probe_apps\n    probe_base\n"
            "\n[importlinter:contract:engine]\n"
            "name = Probe engine imports no Django side\ntype = forbidden\n"
            "source_modules =\n    probe_apps.engine\nforbidden_modules =\n    probe_apps.views\n"
            "\n[importlinter:contract:layers]\n"
            "name = Probe layers\ntype = layers\nlayers =\n    probe_apps\n    probe_base\n"
        ),
    }
    for relative_path, text in files.items():
        path = tmp_path / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    result = _lint_imports(tmp_path)

    assert result.returncode != 0, result.stdout
    assert "Contracts: 0 kept, 2 broken." in result.stdout, f"{result.stdout}\n{result.stderr}"
    assert "probe_base.models -> probe_apps.views" in result.stdout, result.stdout
