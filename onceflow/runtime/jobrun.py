"""The ``main()`` every job shares: parse and check, build, execute.

- Parse the job's config (CLI flags over YAML over defaults) and run its
  checks; an :class:`OnceflowError` ends here as ``error: ...`` and exit code 2,
  before any JVM starts.
- Build the environment from ``flink-conf/`` (:func:`onceflow.runtime.flinkenv.create_env`)
  and attach the pipeline; a refusal while building (e.g. a sink that inspects the
  environment) also exits 2.
- Execute: on the mini-cluster this blocks until the job ends; under
  ``flink run -d`` it returns once the job is submitted.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from onceflow.errors import OnceflowError
from onceflow.runtime.jobconfig import RuntimeConfig

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment

__all__ = ["run_job"]

log = logging.getLogger(__name__)

C = TypeVar("C", bound=RuntimeConfig)


def run_job(
    argv: Sequence[str] | None,
    parse: Callable[[Sequence[str] | None], C],
    check: Callable[[C], None],
    build: Callable[[StreamExecutionEnvironment, C], None],
    job_name: Callable[[C], str],
) -> int:
    """Run one job per the module docstring; returns the process exit code."""
    from onceflow.runtime.flinkenv import create_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        cfg = parse(argv)
        check(cfg)
        log.info("starting %s: %r", job_name(cfg), cfg)
        env = create_env(cfg.flink_settings())
        build(env, cfg)
    except OnceflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env.execute(job_name(cfg))
    return 0
