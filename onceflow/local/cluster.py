"""The local standalone Flink cluster, from the pip-installed Flink distribution.

``up`` renders ``flink-conf/config.yaml`` (placeholders expanded) with the
distribution's log4j files into ``run/flink/conf``, points ``FLINK_CONF_DIR`` at
it, and starts one JobManager and N TaskManagers with the distribution's own
daemon scripts (pids and logs under ``run/flink``). It returns once the REST API
on localhost:8081 (``$ONCEFLOW_FLINK_REST_PORT``; the JobManager's RPC port 6123:
``$ONCEFLOW_FLINK_RPC_PORT``) reports every TaskManager registered. The TaskManagers inherit
a ``PYTHONPATH`` with the venv's site-packages, so thread mode (PEMJA) works.

``submit`` runs ``flink run -py <job>`` against it with the same configuration,
so a job file runs unchanged on the mini-cluster and on this cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from onceflow.errors import OnceflowError
from onceflow.local.processes import pid_alive
from onceflow.local.rest import FlinkRest, rest_get
from onceflow.runtime.flinkenv import expand_placeholders, prepare_python_path
from onceflow.runtime.java import java_executable
from onceflow.runtime.paths import flink_conf_file, flink_home, project_root, run_dir

__all__ = ["LocalFlinkCluster", "ClusterStatus"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterStatus:
    """What the REST API says: None fields when it does not answer."""

    rest_url: str
    taskmanagers: int | None
    slots_total: int | None
    jobs_running: int | None
    log_dir: Path

    @property
    def running(self) -> bool:
        return self.taskmanagers is not None

    def render(self) -> str:
        if not self.running:
            return f"flink: stopped (web UI would be {self.rest_url}); logs {self.log_dir}"
        return (
            f"flink: running at {self.rest_url} ({self.taskmanagers} TaskManagers, "
            f"{self.slots_total} slots, {self.jobs_running} jobs running); logs {self.log_dir}"
        )


class LocalFlinkCluster:
    """One JobManager and ``taskmanagers`` TaskManagers on localhost.

    Failure behaviour: ``up`` raises :class:`OnceflowError` naming the log folder
    when the REST API does not come up or TaskManagers do not register in time.
    """

    def __init__(self, taskmanagers: int = 1) -> None:
        if taskmanagers < 1:
            raise OnceflowError("a cluster needs at least one TaskManager")
        self.taskmanagers = taskmanagers
        self.home = run_dir("flink")
        self.conf_dir = self.home / "conf"
        self.log_dir = self.home / "log"
        self.pid_dir = self.home / "pid"
        self.config = yaml.safe_load(expand_placeholders(flink_conf_file().read_text()))
        # Two clusters on one machine (two checkouts, a CI run next to a developer's)
        # need their own fixed ports; the others (blob, TaskManager RPC/data) are random.
        for env, path in (
            ("ONCEFLOW_FLINK_REST_PORT", ("rest", "port")),
            ("ONCEFLOW_FLINK_RPC_PORT", ("jobmanager", "rpc", "port")),
        ):
            if os.environ.get(env):
                section = self.config
                for part in path[:-1]:
                    section = section.setdefault(part, {})
                section[path[-1]] = int(os.environ[env])
        port = self.config.get("rest", {}).get("port", 8081)
        self.rest_url = f"http://localhost:{port}"

    # Step 1 of up: the rendered configuration -------------------------------------
    def render_conf(self) -> Path:
        """Write ``run/flink/conf`` (config.yaml expanded + the distribution's log4j)."""
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        dist_conf = flink_home() / "conf"
        for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties"):
            shutil.copy(dist_conf / name, self.conf_dir / name)
        config = dict(self.config)
        config.setdefault("env", {})
        config["env"]["pid"] = {"dir": str(self.pid_dir)}
        config["env"]["log"] = {"dir": str(self.log_dir)}
        (self.conf_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._link_lib()
        return self.conf_dir

    def _link_lib(self) -> None:
        """``run/flink/lib``: the distribution's lib/ plus opt/flink-python.

        The pip distribution keeps flink-python (the Python operators' runtime) in
        opt/, so a cluster started on its plain lib/ cannot deserialize a PyFlink job
        (ClassNotFoundException: EmbeddedPythonProcessOperator).
        """
        lib = self.home / "lib"
        if lib.exists():
            shutil.rmtree(lib)
        lib.mkdir(parents=True)
        dist = flink_home()
        for jar in [*(dist / "lib").glob("*.jar"), *(dist / "opt").glob("flink-python-*.jar")]:
            (lib / jar.name).symlink_to(jar)

    def _env(self) -> dict[str, str]:
        prepare_python_path()
        env = dict(os.environ)
        env["FLINK_CONF_DIR"] = str(self.conf_dir)
        env["FLINK_LOG_DIR"] = str(self.log_dir)
        env["FLINK_PID_DIR"] = str(self.pid_dir)
        env["FLINK_LIB_DIR"] = str(self.home / "lib")
        java = Path(java_executable()).resolve()
        env.setdefault("JAVA_HOME", str(java.parent.parent))
        return env

    def _script(self, name: str, *args: str) -> None:
        script = flink_home() / "bin" / name
        result = subprocess.run(
            ["bash", str(script), *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise OnceflowError(
                f"{name} {' '.join(args)} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-400:]}"
            )

    def status(self) -> ClusterStatus:
        try:
            overview = rest_get(self.rest_url, "/overview", timeout=2)
        except (urllib.error.URLError, OSError, ValueError):
            return ClusterStatus(self.rest_url, None, None, None, self.log_dir)
        return ClusterStatus(
            self.rest_url,
            int(overview.get("taskmanagers", 0)),
            int(overview.get("slots-total", 0)),
            int(overview.get("jobs-running", 0)),
            self.log_dir,
        )

    def up(self, timeout: float = 120.0) -> ClusterStatus:
        """Start the cluster (harmless when it runs) and wait for every TaskManager."""
        current = self.status()
        if current.running and (current.taskmanagers or 0) >= self.taskmanagers:
            return current
        self.render_conf()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not current.running:
            self._script("jobmanager.sh", "start")
        for _ in range((current.taskmanagers or 0), self.taskmanagers):
            self.start_taskmanager()
        return self.wait_ready(self.taskmanagers, timeout)

    def wait_ready(self, taskmanagers: int, timeout: float = 120.0) -> ClusterStatus:
        """Block until ``taskmanagers`` TaskManagers are registered."""
        deadline = time.monotonic() + timeout
        status = self.status()
        while time.monotonic() < deadline:
            status = self.status()
            if status.running and (status.taskmanagers or 0) >= taskmanagers:
                return status
            time.sleep(0.5)
        raise OnceflowError(
            f"the Flink cluster did not report {taskmanagers} TaskManagers at "
            f"{self.rest_url} within {timeout:.0f} s; see the logs in {self.log_dir}"
        )

    def start_taskmanager(self) -> None:
        self._script("taskmanager.sh", "start")

    def taskmanager_pids(self) -> list[int]:
        """Pids of the TaskManagers started here (the daemon scripts' pid file)."""
        pids: list[int] = []
        for pid_file in self.pid_dir.glob("*taskexecutor.pid"):
            for line in pid_file.read_text().split():
                with contextlib.suppress(ValueError):
                    pid = int(line)
                    if pid_alive(pid):
                        pids.append(pid)
        return pids

    def kill_taskmanager(self, pid: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one TaskManager (fault injection)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def down(self) -> None:
        """Stop every TaskManager and the JobManager started here."""
        if not self.conf_dir.exists():
            return
        for script in ("taskmanager.sh", "jobmanager.sh"):
            with contextlib.suppress(OnceflowError):
                self._script(script, "stop-all")

    def flink_cli(self) -> list[str]:
        return ["bash", str(flink_home() / "bin" / "flink")]

    def submit(
        self,
        job_file: str,
        job_args: list[str],
        *,
        detached: bool = False,
        savepoint: str | None = None,
        log_file: Path | None = None,
    ) -> int:
        """``flink run -py job_file job_args`` against this cluster; returns its exit code.

        The connector jars travel as the ``pipeline.jars`` the job's environment
        builder sets (``onceflow.runtime.flinkenv``).

        :param savepoint: resume from this savepoint or retained checkpoint (``-s``).
        :param log_file: append the client's output here instead of the terminal.
        """
        if not self.status().running:
            raise OnceflowError("the Flink cluster is not running; start it with `make cluster-up`")
        if not (self.conf_dir / "config.yaml").is_file():
            self.render_conf()
        path = Path(job_file)
        if not path.is_file():
            raise OnceflowError(f"job file {job_file} does not exist")
        cmd = [*self.flink_cli(), "run", "-m", self._address()]
        if detached:
            cmd.append("-d")
        if savepoint:
            cmd += ["-s", savepoint]
        # No -pyfs: the TaskManagers import the project from their PYTHONPATH (see _env).
        cmd += ["-py", str(path.resolve()), *job_args]
        log.info("submitting: %s", " ".join(cmd))
        if log_file is None:
            return subprocess.run(cmd, env=self._env(), cwd=project_root(), check=False).returncode
        with open(log_file, "ab") as out:
            return subprocess.run(
                cmd, env=self._env(), cwd=project_root(), stdout=out, stderr=subprocess.STDOUT,
                timeout=300, check=False,
            ).returncode  # fmt: skip

    def cancel(self, job_id: str) -> None:
        """Cancel a job through the REST API (its checkpoints are retained)."""
        FlinkRest(self.rest_url).cancel(job_id)

    def stop_with_savepoint(self, job_id: str, target: str, log_file: Path) -> str:
        """``flink stop --savepointPath target job_id``; returns the savepoint's path.

        :raises OnceflowError: the stop failed (the client's output is in ``log_file``).
        """
        cmd = [*self.flink_cli(), "stop", "-m", self._address(), "--savepointPath", target, job_id]
        result = subprocess.run(
            cmd, env=self._env(), capture_output=True, text=True, timeout=300, check=False
        )
        with open(log_file, "a") as out:
            out.write(result.stdout + result.stderr)
        match = re.search(r"Savepoint completed\. Path: (\S+)", result.stdout)
        if result.returncode != 0 or not match:
            raise OnceflowError(f"stop-with-savepoint of {job_id} failed; see {log_file}")
        return match.group(1)

    def _address(self) -> str:
        return self.rest_url.removeprefix("http://")
