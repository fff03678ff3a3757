"""Quix Streams (pure Python on librdkafka) doing the same dedup, exactly-once.

Its own venv, ``.cache/bench-venvs/quix`` (git-ignored), is created on first use
with a pinned ``quixstreams``: Quix needs protobuf >= 6, which conflicts with the
protobuf < 6 that PyFlink's apache-beam pins. The application is
:mod:`onceflow.bench.quix_app`, run with that venv's interpreter; its commit
interval is the Flink contenders' checkpoint interval (2 s).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from onceflow.bench.common import BenchContext, BenchSkipped, Child, ContenderResult, run_contender
from onceflow.runtime.paths import cache_dir

__all__ = ["CONTENDERS", "QUIX_REQUIREMENT", "ensure_quix_venv", "quix_venv_dir"]

log = logging.getLogger(__name__)

#: The Quix Streams release the benchmark pins (``pip index versions quixstreams``).
QUIX_REQUIREMENT = "quixstreams==3.28.1"
COMMIT_INTERVAL_S = 2.0


def quix_venv_dir() -> Path:
    return cache_dir() / "bench-venvs" / "quix"


def ensure_quix_venv(timeout_s: float = 900.0) -> Path:
    """The venv's interpreter; creates the venv and installs :data:`QUIX_REQUIREMENT` once.

    :raises BenchSkipped: when the venv cannot be made (no registry, no wheel), with
        pip's last words.
    """
    venv = quix_venv_dir()
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if python.exists() and marker.exists() and marker.read_text().strip() == QUIX_REQUIREMENT:
        return python
    log.info("creating %s with %s (one-off, a minute or two)", venv, QUIX_REQUIREMENT)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # `python -m venv` run from a venv bases the new one on the same CPython.
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", QUIX_REQUIREMENT],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise BenchSkipped(
                f"could not prepare the Quix Streams venv ({' '.join(step[-2:])} exited "
                f"{done.returncode}): {(done.stderr or done.stdout).strip()[-600:]}"
            )
    marker.write_text(QUIX_REQUIREMENT + "\n")
    return python


def run(ctx: BenchContext) -> ContenderResult:
    name = "quix-eos"
    result = ContenderResult(
        name,
        "quix",
        f"exactly-once, commit every {COMMIT_INTERVAL_S:g} s, RocksDB state + changelog, orjson",
    )
    try:
        python = ensure_quix_venv()
    except BenchSkipped as exc:
        result.status, result.error = "skipped", str(exc)
        return result
    out = ctx.create_topic(name)
    group = ctx.name(f"{name}-group")
    app = Path(__file__).with_name("quix_app.py")
    argv = [
        str(python),
        "-P",  # not this folder on sys.path: its modules must not shadow a library's
        str(app),
        "--bootstrap",
        ctx.bootstrap,
        "--input-topic",
        ctx.input_topic,
        "--output-topic",
        out,
        "--group-id",
        group,
        "--state-dir",
        str(ctx.work_dir / "quix-state"),
        "--count",
        str(ctx.expected_uniques),
        "--commit-interval",
        str(COMMIT_INTERVAL_S),
    ]
    child = Child(argv, ctx.file(name, ".log"))
    # Quix creates the state's changelog topic itself; the run deletes it with its own.
    ctx.created_topics.append(f"changelog__{group}--{ctx.input_topic}--default")
    run_contender(ctx, result, child, out, group, start=child.start)
    result.extra["log"] = str(child.log_file)
    result.extra["quixstreams"] = QUIX_REQUIREMENT.split("==")[1]
    return result


#: name -> runner.
CONTENDERS: dict[str, Callable[[BenchContext], ContenderResult]] = {"quix-eos": run}
