"""Dedup by content fingerprint with the identity in a Python UDF and the state in the JVM.

The question (issue: operators at the engine's speed): a fingerprint over canonical
JSON cannot be said in SQL, but only the *identity* needs Python; the keyed state,
the deduplication and the sinks can stay Flink's own. How fast is that, and does
Arrow batching (a pandas UDF) help?

::

    INSERT INTO sink SELECT v FROM (
      SELECT v, ROW_NUMBER() OVER (PARTITION BY k ORDER BY pt) AS rn
      FROM (SELECT v, fingerprint(v) AS k, pt FROM src)
    ) WHERE rn = 1

``fingerprint`` is the function the dedup's JVM path calls for a fingerprint
(:class:`onceflow.operators.dedup.flink.IdentityFunction` with
``IdentitySpec.by_fingerprint()``: the Python path's identity code), one crossing per
record:

* ``udf-fingerprint``: a general Python scalar UDF in thread mode (PEMJA, one call
  per record);
* ``udf-fingerprint-pandas``: the same function over a ``pandas.Series`` per
  batch (Arrow), which PyFlink runs in process mode only.

Next to them, ``flink-py-fingerprint`` (:mod:`onceflow.bench.flink_dedup`) is the
dedup job's fingerprint mode as it ships: the whole operator in Python. These
contenders measure a path; they have no dead-letter output (the bench workload has
no malformed records). Run one as a job::

    python -m onceflow.bench.udf_identity --input-topic in --output-topic out \\
        --transactional-id-prefix fp-1 --bounded [--pandas]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from onceflow.bench.common import (
    BenchContext,
    ContenderResult,
    flink_tasks_running,
    run_contender,
)
from onceflow.bench.flink_sql import (
    contender_table_env,
    exactly_once_options,
    parse_sql_job_args,
    source_options,
    sql_job_parser,
    with_options,
)
from onceflow.testing.harness import JobProcess

__all__ = ["CONTENDERS", "main"]

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 1_000_000

QUERY = """
INSERT INTO sink SELECT v FROM (
  SELECT v, ROW_NUMBER() OVER (PARTITION BY k ORDER BY pt) AS rn
  FROM (SELECT v, fingerprint(v) AS k, pt FROM src)
) WHERE rn = 1
"""


def _identity_function() -> Any:
    """The dedup's own fingerprint function (pyflink is imported only in the job)."""
    from onceflow.operators.dedup.flink import IdentityFunction
    from onceflow.operators.dedup.identity import IdentitySpec

    return IdentityFunction(IdentitySpec.by_fingerprint(), MAX_RECORD_BYTES)


def _ddl(args: argparse.Namespace) -> tuple[str, str]:
    sink = {
        "connector": "kafka",
        "topic": args.output_topic,
        "properties.bootstrap.servers": args.bootstrap,
        "format": "raw",
        **exactly_once_options(args.transactional_id_prefix),
    }
    return (
        "CREATE TEMPORARY TABLE src (v BYTES, pt AS PROCTIME())\n"
        f"WITH (\n  {with_options(source_options(args, 'raw'))}\n)",
        f"CREATE TEMPORARY TABLE sink (v BYTES) WITH (\n  {with_options(sink)}\n)",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = sql_job_parser("onceflow.bench.udf_identity", __doc__)
    parser.add_argument("--pandas", action="store_true", help="Arrow batches (process mode)")
    return parse_sql_job_args(parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the UDF-identity dedup; returns when a bounded run has finished."""
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    args = parse_args(argv)
    # Pandas UDFs run in process mode only.
    tenv = contender_table_env(args, "process" if args.pandas else "thread")
    identity = _identity_function()
    if args.pandas:

        def fingerprints(values: Any) -> Any:
            """The same function over a ``pandas.Series`` of values."""
            return values.map(identity.eval)

        function = udf(fingerprints, result_type=DataTypes.STRING(), func_type="pandas")
    else:
        function = udf(identity, result_type=DataTypes.STRING())
    tenv.create_temporary_function("fingerprint", function)
    for ddl in _ddl(args):
        tenv.execute_sql(ddl)
    log.info("plan:\n%s", tenv.explain_sql(QUERY.replace("INSERT INTO sink", "")))
    tenv.execute_sql(QUERY).wait()
    return 0


def run(ctx: BenchContext, name: str, pandas: bool) -> ContenderResult:
    out = ctx.create_topic(name)
    group = ctx.name(f"{name}-group")
    args = [
        "--bootstrap", ctx.bootstrap, "--input-topic", ctx.input_topic, "--output-topic", out,
        "--group-id", group, "--transactional-id-prefix", ctx.name(name),
        "--checkpoint-dir", str(ctx.checkpoints(name)), "--bounded",
    ]  # fmt: skip
    if pandas:
        args.append("--pandas")
    mode = "pandas UDF (Arrow batches)/process" if pandas else "Python UDF/thread"
    result = ContenderResult(name, "udf", f"fingerprint in a {mode}, Flink dedup, EOS/p1/rocksdb")
    job = JobProcess("onceflow.bench.udf_identity", args, ctx.file(name, ".log"))
    run_contender(
        ctx, result, job, out, group, start=job.start, tasks_running=flink_tasks_running(job)
    )
    result.extra["log"] = str(job.log_file)
    return result


def _runner(name: str, pandas: bool) -> Callable[[BenchContext], ContenderResult]:
    return lambda ctx: run(ctx, name, pandas)


#: name -> runner, in run order.
CONTENDERS: dict[str, Callable[[BenchContext], ContenderResult]] = {
    "udf-fingerprint": _runner("udf-fingerprint", False),
    "udf-fingerprint-pandas": _runner("udf-fingerprint-pandas", True),
}


if __name__ == "__main__":
    sys.exit(main())
