"""What the package declares: its licence, and runtime dependencies that are exactly
what the monitor imports (scapy is for tests and tools only)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib

import ixpect
from conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_licence_is_shipped():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")


def test_every_module_imports_without_test_only_dependencies():
    modules = [m.name for m in pkgutil.walk_packages(ixpect.__path__, "ixpect.")]
    assert "ixpect.daemon" in modules and "ixpect.notify.email" in modules
    blocked = "import sys; sys.modules.update(scapy=None, pytest=None, aiosmtpd=None)\n"
    code = blocked + "".join(f"import {m}\n" for m in modules if m != "ixpect.__main__")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    runtime = " ".join(PYPROJECT["project"]["dependencies"])
    assert "scapy" not in runtime and "scapy>=2.5" in PYPROJECT["project"]["optional-dependencies"]["test"]
