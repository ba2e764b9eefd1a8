"""Architecture rules: lcz_model never imports Django; class codes live only in lcz_model.classes."""
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import lcz_model

ROOT = Path(__file__).resolve().parents[1]


def test_lcz_model_never_imports_django():
    modules = [f"lcz_model.{m.name}" for m in pkgutil.iter_modules(lcz_model.__path__)]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith(('django.', 'annotator', 'config')))\n"
            "print(bad)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
    assert len(modules) >= 10


def test_the_17_codes_are_not_hard_coded_elsewhere():
    """A literal list of the LCZ keys in order appears only in lcz_model/classes.py."""
    pattern = re.compile(r"lcz_1['\"]\s*,\s*['\"]lcz_2['\"]\s*,\s*['\"]lcz_3")
    offenders = [p for p in ROOT.glob("**/*.py")
                 if ".venv" not in p.parts and "var" not in p.parts and p.name != "classes.py"
                 and "tests" not in p.parts and pattern.search(p.read_text(errors="ignore"))]
    assert offenders == []
