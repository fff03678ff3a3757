"""One import namespace: the repository's jobs/, operators/ and sinks/ are onceflow.*.

The project root is on ``sys.path`` in a checkout, so a stray ``import operators``
would still work and load a second copy of every module (two ``Rejected``
classes, two sets of constants): nothing may import them by their top-level
names.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from onceflow.paths import project_root

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
