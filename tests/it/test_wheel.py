"""The wheel works outside the checkout: one top-level package, data and jars included.

The wheel is built from this checkout and installed (without dependencies) into a
fresh venv in a temporary folder; the dependencies come from the project's venv
through a ``.pth`` file, so the test needs no download of PyFlink. From a folder
that is not the checkout, with its own ``ONCEFLOW_HOME`` and jar cache, the
installed copy resolves its jars with Maven (``onceflow jars``) and runs a job
end to end against the broker, read back with read_committed: the example of
``examples/``, a user's own job file using the toolkit.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from orders_workload import committed_statuses, oracle, order_lines

from onceflow.runtime.paths import checkout_root
from onceflow.testing.drain import read_committed
from onceflow.testing.recovery import send


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}{done.stderr[-4000:]}"
    return done.stdout


def test_installed_wheel_runs_the_example_outside_the_checkout(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    root = checkout_root()
    assert root is not None
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ONCEFLOW_HOME")}
    env |= {"ONCEFLOW_HOME": str(tmp_path / "home"), "ONCEFLOW_CACHE": str(tmp_path / "cache")}
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "-q", "-w", str(dist)],
        tmp_path,
        env,
        300,
    )
    (wheel,) = dist.glob("onceflow-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(top).decode().split() == ["onceflow"]
    assert "onceflow/_data/flink-conf/config.yaml" in names
    assert {"onceflow/jobs/dedup.py", "onceflow/operators/records.py"} <= set(names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env, 120)
    python = str(venv / "bin" / "python")
    (target,) = (venv / "lib").glob("python3.*/site-packages")
    # Dependencies from the project's venv; onceflow itself only from the wheel.
    (target / "_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", str(wheel)],
        tmp_path,
        env,
        300,
    )
    where = _run([python, "-c", "import onceflow; print(onceflow.__file__)"], tmp_path, env, 60)
    assert where.strip().startswith(str(target)), where
    help_text = _run([python, "-m", "onceflow.jobs.dedup", "--help"], tmp_path, env, 120)
    assert "--input-topic" in help_text
    jars = _run([python, "-m", "onceflow", "jars"], tmp_path, env, 600)
    assert str(tmp_path / "cache") in jars, jars

    # The example, a user's own job file, run by the installed copy.
    example = tmp_path / "orders.py"
    shutil.copy(root / "examples" / "orders.py", example)
    source, status = topic_factory("orders"), topic_factory("status")
    lines = order_lines(seed=11, orders=60)
    send(kafka_bootstrap, source, [(None, line) for line in lines])
    args = [f"--bootstrap={kafka_bootstrap}", f"--input-topic={source}", "--bounded"]
    args += [f"--status-topic={status}", f"--prefix={unique_name('orders')}"]
    args += [f"--{flag}-topic={topic_factory(flag)}" for flag in ("rejected", "dlq")]
    args += [f"--changes-path={tmp_path / 'changes'}"]
    _run([python, str(example), *args], tmp_path, env, 300)
    records = read_committed(kafka_bootstrap, status, quiet_ms=1500, progress=False)
    assert committed_statuses([r.value for r in records]) == Counter(oracle(lines)[0])
    assert not any(p.name in ("run", ".cache") for p in tmp_path.iterdir())
    assert (tmp_path / "home" / "run").is_dir()
