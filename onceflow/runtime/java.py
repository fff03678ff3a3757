"""The pinned Java artifacts: resolving them with Maven, finding a JDK, running Java.

The manifests (``java/<kind>/pom.xml``) ship with the package; Maven copies each
manifest's runtime dependencies into :func:`onceflow.runtime.paths.jars_dir` (the
checkout's ``.cache/jars`` or the user's cache, never the current directory).
A stamp file holds the manifest's SHA-256, so a second resolution of an
unchanged manifest does nothing and a changed one resolves again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from onceflow.errors import OnceflowError
from onceflow.runtime.paths import data_path, jars_dir

__all__ = [
    "JAR_KINDS",
    "classpath",
    "java_executable",
    "jdbc_jars",
    "resolve_jars",
    "run_java_main",
]

log = logging.getLogger(__name__)

JAR_KINDS = {
    # The broker and Kafka's own tools.
    "kafka": (),
    # Connectors attached to jobs; Flink's own lib/ already has these three.
    "flink": ("slf4j-api", "commons-logging", "jsr305"),
    # The local schema registry's distribution (one tar.gz, unpacked by its starter).
    "registry": (),
}
"""Jar folders by kind, with the artifacts left out of each."""

_COPY_ARTIFACT_ITEMS = frozenset({"registry"})
"""Kinds whose manifest lists ``artifactItems`` for ``dependency:copy``: their artifact's
dependency descriptor (a parent POM) is not served, so ``copy-dependencies`` cannot
resolve them; the artifact itself is self-contained."""


def resolve_jars(kind: str, *, force: bool = False) -> Path:
    """Copy the pinned artifacts of ``kind`` into their folder with Maven, once.

    :param force: resolve again even when the stamp says the folder is current.
    :returns: the folder.
    :raises OnceflowError: when Maven is missing or fails.
    """
    if kind not in JAR_KINDS:
        raise OnceflowError(f"unknown jar kind {kind!r}: use one of {', '.join(JAR_KINDS)}")
    pom = data_path("java", kind, "pom.xml")
    folder = jars_dir(kind)
    stamp = folder / ".resolved"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if not force and stamp.is_file() and stamp.read_text().strip() == digest:
        return folder
    mvn = shutil.which(os.environ.get("MVN", "mvn"))
    if mvn is None:
        raise OnceflowError(
            "Maven (mvn) not found: it resolves onceflow's pinned Java artifacts from Maven "
            "Central; install it (apt-get install maven) and run `onceflow jars`"
        )
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if kind in _COPY_ARTIFACT_ITEMS:
        cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy", f"-DoutputDirectory={folder}"]
    else:
        cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies"]
        cmd += [f"-DoutputDirectory={folder}", "-DincludeScope=runtime"]
    if JAR_KINDS[kind]:
        cmd.append("-DexcludeArtifactIds=" + ",".join(JAR_KINDS[kind]))
    log.info("resolving the %s jars into %s", kind, folder)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OnceflowError(
            f"Maven could not resolve {pom}: {(done.stdout + done.stderr).strip()[-1500:]}"
        )
    stamp.write_text(digest + "\n")
    return folder


def jdbc_jars() -> list[str]:
    """``file://`` URLs of the JDBC connector, the PostgreSQL driver and onceflow's glue
    (built from ``java/jdbc-glue`` by ``make jars``; checkout only)."""
    folder = jars_dir("jdbc")
    jars = sorted(folder.glob("*.jar"))
    if not any(j.name.startswith("onceflow-jdbc-glue") for j in jars):
        raise OnceflowError(
            f"the JDBC glue jar is not in {folder}: run `make jars` (it builds java/jdbc-glue "
            "and resolves the JDBC connector and the PostgreSQL driver)"
        )
    return [j.resolve().as_uri() for j in jars]


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
    folder = resolve_jars(kind)
    if not any(folder.glob("*.jar")):
        raise OnceflowError(f"no jars in {folder}: run `onceflow jars --force`")
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
