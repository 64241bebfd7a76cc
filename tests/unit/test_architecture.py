"""The shape of the code: data flows one way, one composition root, one vocabulary."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from healer.vocabulary import Event, IncidentOutcome, Outcome

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "healer"
WORDS = {w.value for enum in (Outcome, Event, IncidentOutcome) for w in enum}


def modules(*folders: Path) -> list[Path]:
    """Every Python file under the folders."""
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module a file imports, at run time or for type checking alike."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def word_literals(path: Path) -> list[str]:
    """String literals spelling an outcome or event name, but docstrings and field names.

    A dict key or a subscript (``row["healed"]``) names a field, not an outcome.
    """
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))  # a docstring
        if isinstance(node, ast.Dict):
            skip.update(id(key) for key in node.keys if key is not None)
        elif isinstance(node, ast.Subscript):
            skip.add(id(node.slice))
    return [f"{path}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value in WORDS and id(node) not in skip]


def test_probes_and_detectors_do_not_import_the_state_store() -> None:
    """Probes only read and detectors are pure: neither may import healer.state at all."""
    offenders = [str(p.relative_to(ROOT)) for p in modules(PACKAGE / "probes",
                                                           PACKAGE / "detectors")
                 if any(name == "healer.state" or name.startswith("healer.state.")
                        for name in imported(p))]
    assert offenders == []


def test_only_the_composition_root_builds_a_pipeline() -> None:
    """Pipeline(...) is called in healer/compose.py and nowhere else: not in tests either."""
    callers = [str(path.relative_to(ROOT))
               for path in modules(PACKAGE, ROOT / "tests", ROOT / "benchmarks")
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Pipeline"]
    assert callers == ["healer/compose.py"]


def test_outcomes_and_event_names_are_spelled_only_in_the_vocabulary() -> None:
    """No string literal outside healer/vocabulary.py spells an outcome or an event name."""
    found = [hit for path in modules(PACKAGE) if path.name != "vocabulary.py"
             for hit in word_literals(path)]
    assert found == []


def test_the_literal_check_sees_a_bare_outcome(tmp_path: Path) -> None:
    """The vocabulary check flags a bare "healed", not a docstring or a field name."""
    probe = tmp_path / "probe.py"
    probe.write_text('"""healed"""\nx = {"healed": 1}\nx["healed"] = 2\ny = "healed"\n')
    assert word_literals(probe) == [f"{probe}:4: 'healed'"]


def test_healer_does_not_import_the_sandbox() -> None:
    """The product ships no test bench: nothing under healer/ imports the sandbox package."""
    offenders = [str(p.relative_to(ROOT)) for p in modules(PACKAGE)
                 if any(name == "sandbox" or name.startswith("sandbox.") for name in imported(p))]
    assert offenders == []


def test_unit_tests_load_neither_the_sandbox_nor_celery() -> None:
    """Importing every unit test module (and the shared conftest) loads no sandbox and no Celery."""
    names = ["tests.conftest", *(f"tests.unit.{p.stem}" for p in
                                 sorted((ROOT / "tests" / "unit").glob("test_*.py")))]
    code = ("import importlib, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sandbox', 'celery'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_asking_the_workers_and_hearing_their_events_loads_no_celery() -> None:
    """The control probe and the event listener, used over a broker, speak kombu alone."""
    code = ("import sys\n"
            "from healer.probes.celery import ControlProbe\n"
            "from healer.testing import ManualClock\n"
            "from tests.unit.test_events import received\n"
            "ControlProbe('memory://', 0.1, ManualClock()).ask({'w1@host': 'w1'}, backlog=True)\n"
            "received({'type': 'worker-heartbeat', 'hostname': 'w1@host'})\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'celery', 'kombu'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True, timeout=60)
    assert result.stdout.strip() == "['kombu']"


def test_the_wheel_holds_healer_alone(tmp_path: Path) -> None:
    """`pip wheel --no-deps .` packs healer and its data; no sandbox, tests or benchmarks."""
    source = tmp_path / "source"  # a copy: setuptools leaves build/ behind in what it builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "*_cache", "__pycache__", "build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(tmp_path / "dist"), str(source)],
                   cwd=tmp_path, capture_output=True, check=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("healer-*.whl"))
    with zipfile.ZipFile(wheel) as packed:
        names = packed.namelist()
    assert {name.split("/")[0] for name in names} == {
        "healer", f"healer-{wheel.name.split('-')[1]}.dist-info"}
    assert [n for n in names if "sandbox" in n] == []
