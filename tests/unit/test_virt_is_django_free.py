"""virt/ is the libvirt layer: it must never import Django."""

import ast
import subprocess
import sys
from pathlib import Path

VIRT = Path(__file__).resolve().parents[2] / "virt"


def test_no_module_in_virt_imports_django() -> None:
    offenders = []
    for path in VIRT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "django"]
    assert offenders == []


def test_importing_every_virt_module_loads_no_django() -> None:
    modules = sorted(".".join(p.relative_to(VIRT.parent).with_suffix("").parts) for p in VIRT.rglob("*.py"))
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "assert 'django' not in sys.modules, 'django'\n"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=VIRT.parent, env={"PATH": "/usr/bin:/bin"})
