"""Finding a JDK and running Java classes from the project's resolved jars."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from onceflow.errors import OnceflowError
from onceflow.runtime.paths import jars_dir

__all__ = ["java_executable", "classpath", "run_java_main"]


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH; a clear error when neither exists."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise OnceflowError(
            "no JDK found: neither $JAVA_HOME/bin/java nor java on PATH; "
            "install OpenJDK 17 (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
        )
    return found


def classpath(kind: str) -> str:
    """The ``-cp`` wildcard of a resolved jar folder; a clear error when unresolved."""
    folder = jars_dir(kind)
    if not any(folder.glob("*.jar")):
        raise OnceflowError(
            f"no jars in {folder}: the Java artifacts are not resolved; run `make jars`"
        )
    return str(folder / "*")


def run_java_main(
    main_class: str,
    args: Sequence[str],
    *,
    kind: str = "kafka",
    timeout: float | None = 120,
    jvm_opts: Sequence[str] = ("-Xmx512m",),
) -> subprocess.CompletedProcess[str]:
    """Run ``main_class`` from the ``kind`` jars and capture its output."""
    cmd = [java_executable(), *jvm_opts, "-cp", classpath(kind), main_class, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
