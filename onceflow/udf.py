"""onceflow's own Java functions: compiled on first use, attached to a job, registered.

At the bottom of the layers (beside :mod:`onceflow.streams`): the operators call
these functions; it imports only :mod:`onceflow.runtime.paths`, which imports nothing.

The sources (``java/udf/*.java``, shipped with the package) are compiled with the
JDK's ``javac`` against the Flink jars of the pip-installed PyFlink, once per
source version, into :func:`onceflow.runtime.paths.jars_dir` ``("udf")`` (the
checkout's ``.cache/jars`` or the user's cache). A wheel therefore needs no Maven
and no prebuilt jar: only a JDK, which Flink needs anyway.

- ``onceflow_json_id(v, path, max_bytes, max_depth)``
  (:class:`dev.onceflow.udf.JsonIdScanner`): the dedup identity of a raw JSON value,
  or NULL when Python might not accept the record (see the class's javadoc).
- ``onceflow_fail_once(id, armed, marker_dir)`` (:class:`dev.onceflow.udf.FailOnce`):
  the failure injection of recovery tests, in a query only when faults are armed.

Beside them, in the same jar, two DataStream functions (PyFlink wraps no Java
DataStream function: :func:`java_function` builds them through the gateway):
:class:`dev.onceflow.udf.VersionedDecision`, the versioned update's keyed decision
(the JVM path of ``versioned_update``), and :class:`dev.onceflow.udf.SplitUnkeyed`,
which sends records without a dedup identity to a side output.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from onceflow.errors import OnceflowError
from onceflow.runtime.paths import data_path, flink_home, jars_dir

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

__all__ = [
    "FAIL_ONCE",
    "FUNCTIONS",
    "JSON_ID",
    "attach_udf_jar",
    "java_function",
    "output_tag",
    "register_udfs",
    "udf_jar",
]

log = logging.getLogger(__name__)

JSON_ID: Final = "onceflow_json_id"
FAIL_ONCE: Final = "onceflow_fail_once"
FUNCTIONS: Final = {
    JSON_ID: "dev.onceflow.udf.JsonIdScanner",
    FAIL_ONCE: "dev.onceflow.udf.FailOnce",
}
"""SQL name -> Java class of every function :func:`register_udfs` registers."""

_SOURCES: Final = (
    "JsonIdScanner.java",
    "FailOnce.java",
    "VersionedDecision.java",
    "SplitUnkeyed.java",
)


def _javac() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "javac").is_file():
        return str(Path(java_home) / "bin" / "javac")
    found = shutil.which("javac")
    if not found:
        raise OnceflowError(
            "no javac found: onceflow compiles its Java functions (the JVM dedup path) on "
            "first use; install a JDK 17 (apt-get install openjdk-17-jdk-headless), set "
            "JAVA_HOME, or use dedup(..., path='python')"
        )
    return found


def udf_jar() -> Path:
    """The jar of onceflow's Java functions, compiled now unless this version exists.

    :raises OnceflowError: when no JDK is found or the sources do not compile.
    """
    sources = [data_path("java", "udf", name) for name in _SOURCES]
    digest = hashlib.sha256(b"".join(Path(s).read_bytes() for s in sources)).hexdigest()[:16]
    folder = jars_dir("udf")
    jar = folder / f"onceflow-udf-{digest}.jar"
    if jar.is_file():
        return jar
    folder.mkdir(parents=True, exist_ok=True)
    lib = flink_home() / "lib"
    with tempfile.TemporaryDirectory(dir=folder) as work:
        classes = Path(work) / "classes"
        cmd = [_javac(), "--release", "11", "-nowarn", "-cp", str(lib / "*"), "-d", str(classes)]
        log.info("compiling onceflow's Java functions into %s", jar)
        done = subprocess.run(
            [*cmd, *map(str, sources)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise OnceflowError(
                f"javac could not compile onceflow's Java functions: "
                f"{(done.stdout + done.stderr).strip()[-1500:]}"
            )
        staged = Path(work) / jar.name
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(classes.rglob("*.class")):
                archive.write(path, path.relative_to(classes).as_posix())
        # Atomic: a concurrent first use (another job, a test) sees no half-written jar.
        os.replace(staged, jar)
    return jar


def attach_udf_jar(env: StreamExecutionEnvironment) -> None:
    """Add the functions' jar to ``env``'s ``pipeline.jars`` (and its class loader) once."""
    url = udf_jar().resolve().as_uri()
    config = env._j_stream_execution_environment.getConfiguration()
    current = config.toMap().get("pipeline.jars") or ""
    if url not in current.split(";"):
        env.add_jars(url)


def register_udfs(tenv: StreamTableEnvironment) -> None:
    """Register :data:`FUNCTIONS` as temporary system functions of ``tenv``
    (whose environment has the jar: :func:`attach_udf_jar`)."""
    for name, cls in FUNCTIONS.items():
        tenv.create_java_temporary_system_function(name, cls)


def java_function(name: str, *args: Any) -> Any:
    """A new ``dev.onceflow.udf.<name>(*args)`` in the gateway's JVM (``name`` may be a
    nested class, ``Outer.Inner``; the jar must be attached: :func:`attach_udf_jar`)."""
    from pyflink.java_gateway import get_gateway

    found = get_gateway().jvm.dev.onceflow.udf
    for part in name.split("."):
        found = getattr(found, part)
    return found(*args)


def output_tag(name: str, type_info: Any) -> Any:
    """A Java ``OutputTag`` of the PyFlink ``type_info``, for a Java function's side output."""
    from pyflink.java_gateway import get_gateway

    return get_gateway().jvm.org.apache.flink.util.OutputTag(name, type_info.get_java_type_info())
