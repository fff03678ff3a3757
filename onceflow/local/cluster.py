"""The local standalone Flink cluster, from the pip-installed Flink distribution.

``up`` renders ``flink-conf/config.yaml`` (placeholders expanded) with the
distribution's log4j files into ``run/flink/conf``, points ``FLINK_CONF_DIR`` at
it, and starts one JobManager and N TaskManagers with the distribution's own
daemon scripts (pids and logs under ``run/flink``). It returns once the REST API
on localhost:8081 (``$ONCEFLOW_FLINK_REST_PORT``; the JobManager's RPC port 6123:
``$ONCEFLOW_FLINK_RPC_PORT``) reports every TaskManager registered. The TaskManagers inherit
a ``PYTHONPATH`` with the venv's site-packages, so thread mode (PEMJA) works.

``submit`` runs ``flink run -py <job>`` against it with the same configuration,
so a job file runs unchanged on the mini-cluster and on this cluster;
``start_job`` submits detached (optionally from a savepoint or retained
checkpoint) and returns the job id once every task runs, or explains why the
savepoint's state does not fit (:mod:`onceflow.local.jobs`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from onceflow.errors import OnceflowError
from onceflow.local.jobs import (
    StateNotRestored,
    explain_restore_failure,
    stop_with_savepoint,
    wait_running,
)
from onceflow.local.processes import pid_alive, socket_owner
from onceflow.local.rest import FlinkRest, rest_get
from onceflow.runtime.flinkenv import expand_placeholders, prepare_python_path
from onceflow.runtime.java import java_executable
from onceflow.runtime.paths import flink_conf_file, flink_home, project_root, run_dir

__all__ = ["LocalFlinkCluster", "ClusterStatus", "flink_run_command"]

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

    # The rendered configuration (the first thing up does) ------------------------
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

    def job_taskmanager_pids(self, job_id: str) -> list[int]:
        """Pids of the TaskManagers started here that run a subtask of ``job_id``
        (each found by the data port its process listens on)."""
        hosting: list[str] = []
        for vertex in rest_get(self.rest_url, f"/jobs/{job_id}").get("vertices", []):
            path = f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers"
            for tm in rest_get(self.rest_url, path).get("taskmanagers", []):
                if tm.get("taskmanager-id") not in hosting:
                    hosting.append(tm["taskmanager-id"])
        ours = self.taskmanager_pids()
        pids: list[int] = []
        for tm_id in hosting:
            port = rest_get(self.rest_url, f"/taskmanagers/{tm_id}").get("dataPort")
            pid = socket_owner(int(port), ours) if port else None
            if pid is not None and pid not in pids:
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
        allow_non_restored_state: bool = False,
        log_file: Path | None = None,
    ) -> int:
        """``flink run -py job_file job_args`` against this cluster; returns its exit code.

        The connector jars travel as the ``pipeline.jars`` the job's environment
        builder sets (``onceflow.runtime.flinkenv``). A client that fails because
        the savepoint's state does not fit the job is explained on stderr.

        :param savepoint: resume from this savepoint or retained checkpoint (``-s``).
        :param allow_non_restored_state: drop savepoint state no operator claims (``-n``).
        :param log_file: append the client's output here instead of the terminal.
        """
        cmd = self._run_command(job_file, job_args, detached, savepoint, allow_non_restored_state)
        if log_file is None:
            tail: list[str] = []
            with subprocess.Popen(
                cmd, env=self._env(), cwd=project_root(), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True,
            ) as proc:  # fmt: skip
                assert proc.stdout is not None
                for line in proc.stdout:
                    sys.stdout.write(line)
                    tail = [*tail[-400:], line]
            if proc.returncode != 0:
                explained = explain_restore_failure("".join(tail))
                if explained:
                    print(f"error: {explained}", file=sys.stderr)
            return proc.returncode
        with open(log_file, "ab") as out:
            return subprocess.run(
                cmd, env=self._env(), cwd=project_root(), stdout=out, stderr=subprocess.STDOUT,
                timeout=300, check=False,
            ).returncode  # fmt: skip

    def start_job(
        self,
        job_file: str,
        job_args: list[str],
        *,
        savepoint: str | None = None,
        allow_non_restored_state: bool = False,
        log_file: Path | None = None,
        wait: bool = True,
        timeout: float = 180,
    ) -> str:
        """Submit detached and return the job id once every task runs.

        :raises StateNotRestored: the savepoint's state does not fit the job (what to
            change is in the message); a job that cannot restore is cancelled.
        :raises OnceflowError: the client failed otherwise (its output is in ``log_file``).
        """
        cmd = self._run_command(job_file, job_args, True, savepoint, allow_non_restored_state)
        done = subprocess.run(
            cmd, env=self._env(), cwd=project_root(), capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        output = done.stdout + done.stderr
        if log_file is not None:
            with open(log_file, "a") as out:
                out.write(output)
        match = re.search(r"Job has been submitted with JobID ([0-9a-f]{32})", output)
        if done.returncode != 0 or not match:
            explained = explain_restore_failure(output)
            if explained:
                raise StateNotRestored(explained)
            where = f"see {log_file}" if log_file else _last_error(output)
            raise OnceflowError(
                f"flink run {Path(job_file).name} failed ({done.returncode}); {where}"
            )
        job_id = match.group(1)
        if wait:
            rest = FlinkRest(self.rest_url)
            try:
                wait_running(rest, job_id, timeout=timeout, fail_on_restore_error=True)
            except StateNotRestored:
                with contextlib.suppress(OSError, ValueError):
                    rest.cancel(job_id)
                raise
        return job_id

    def _run_command(
        self,
        job_file: str,
        job_args: list[str],
        detached: bool,
        savepoint: str | None,
        allow_non_restored_state: bool,
    ) -> list[str]:
        if not self.status().running:
            raise OnceflowError("the Flink cluster is not running; start it with `make cluster-up`")
        if not (self.conf_dir / "config.yaml").is_file():
            self.render_conf()
        path = Path(job_file)
        if not path.is_file():
            raise OnceflowError(f"job file {job_file} does not exist")
        cmd = flink_run_command(
            self.flink_cli(), self._address(), path.resolve(), job_args,
            detached=detached, savepoint=savepoint,
            allow_non_restored_state=allow_non_restored_state,
        )  # fmt: skip
        log.info("submitting: %s", " ".join(cmd))
        return cmd

    def rest(self) -> FlinkRest:
        return FlinkRest(self.rest_url)

    def checkpoint_dir(self) -> Path | None:
        """The local folder of ``execution.checkpointing.dir`` (None when not a file URI)."""
        configured = str(self.config.get("execution", {}).get("checkpointing", {}).get("dir", ""))
        if configured.startswith("file:"):
            return Path(configured.removeprefix("file://").removeprefix("file:"))
        return None

    def cancel(self, job_id: str) -> None:
        """Cancel a job through the REST API (its checkpoints are retained)."""
        FlinkRest(self.rest_url).cancel(job_id)

    def stop_with_savepoint(self, job_id: str, target: str | None = None) -> str:
        """Stop the job with a savepoint (retried across a failover); returns its path."""
        return stop_with_savepoint(FlinkRest(self.rest_url), job_id, target)

    def _address(self) -> str:
        return self.rest_url.removeprefix("http://")


def flink_run_command(
    flink: list[str],
    address: str,
    job_file: Path,
    job_args: list[str],
    *,
    detached: bool = False,
    savepoint: str | None = None,
    allow_non_restored_state: bool = False,
) -> list[str]:
    """``flink run`` of a Python job file: ``-d`` detached, ``-s`` resume from a savepoint or
    retained checkpoint, ``-n`` drop state no operator claims (only with ``-s``)."""
    cmd = [*flink, "run", "-m", address]
    if detached:
        cmd.append("-d")
    if savepoint:
        cmd += ["-s", savepoint]
        if allow_non_restored_state:
            cmd.append("-n")
    # No -pyfs: the TaskManagers import the project from their PYTHONPATH (see _env).
    return [*cmd, "-py", str(job_file), *job_args]


def _last_error(output: str) -> str:
    """The most telling line of a failed ``flink run``: its deepest cause."""
    causes = [ln.strip() for ln in output.splitlines() if ln.strip().startswith("Caused by:")]
    errors = [ln.strip() for ln in output.splitlines() if "error:" in ln.lower()]
    return (causes or errors or [output.strip()[-300:]])[-1][:500]
