"""One import namespace: the repository's jobs/, operators/ and sinks/ are onceflow.*.

The project root is on ``sys.path`` in a checkout, so a stray ``import operators``
would still work and load a second copy of every module (two ``Rejected``
classes, two sets of constants): nothing may import them by their top-level
names.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import onceflow as onceflow_package
from onceflow.runtime.paths import project_root

TOP_LEVEL_IMPORT = re.compile(r"^\s*(from|import) (jobs|operators|sinks)\b", re.M)


def _sources() -> list[Path]:
    root = project_root()
    found = (
        [
            p
            for folder in ("onceflow", "jobs", "operators", "sinks", "tests", "examples")
            for p in (root / folder).rglob("*.py")
        ]
        if root.is_dir()
        else []
    )
    return [p for p in found if "onceflow/jobs" not in p.as_posix()]


def test_nothing_imports_jobs_operators_or_sinks_by_their_top_level_names() -> None:
    offenders = [str(p) for p in _sources() if TOP_LEVEL_IMPORT.search(p.read_text())]
    assert not offenders, offenders


def test_the_namespace_resolves_to_the_repository_folders() -> None:
    import onceflow.jobs.dedup
    import onceflow.operators.records
    import onceflow.sinks.kafka

    root = project_root().resolve()
    for module, folder in (
        (onceflow.jobs.dedup, "jobs"),
        (onceflow.operators.records, "operators"),
        (onceflow.sinks.kafka, "sinks"),
    ):
        assert Path(module.__file__ or "").resolve().parent == root / folder
    assert "operators" not in sys.modules and "sinks" not in sys.modules


def test_a_job_module_runs_from_any_directory(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "onceflow.jobs.dedup", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--input-topic" in run.stdout


# What each layer may import from onceflow (besides itself): tooling -> runtime ->
# operators/sinks -> streams/schema/errors. onceflow.avro (wire format, registry client)
# sits at the bottom too, so the operators and the Kafka source can reuse it.
BASE = ("onceflow.streams", "onceflow.schema", "onceflow.errors")
ALLOWED = {
    "onceflow/avro": ("onceflow.avro", "onceflow.errors"),
    "onceflow/operators": ("onceflow.operators", *BASE),
    "onceflow/sinks": ("onceflow.sinks", *BASE),
    "onceflow/runtime": (
        "onceflow.runtime",
        "onceflow.avro",
        "onceflow.operators",
        "onceflow.sinks",
        *BASE,
    ),
    "onceflow/jobs": (
        "onceflow.jobs",
        "onceflow.avro",
        "onceflow.runtime",
        "onceflow.operators",
        "onceflow.sinks",
        *BASE,
    ),
}


def _onceflow_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "onceflow" or name.startswith("onceflow.")}


def test_imports_flow_one_way() -> None:
    package = Path(onceflow_package.__file__ or "").parent
    wrong: list[str] = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((package / layer.split("/", 1)[1]).rglob("*.py")):
            for name in _onceflow_imports(path):
                if name != "onceflow" and not name.startswith(allowed):
                    wrong.append(f"{layer}/{path.name} imports {name}")
    assert not wrong, wrong
