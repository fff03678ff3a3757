"""The transactional id prefix each output topic was last written with, and a warning
when a job starts with another one.

A changed (or shared) prefix is the classic source of orphan transactions: a
Flink ``KafkaSink`` aborts, at start, only the lingering transactions of its *own*
prefix, so those of the old prefix stay open until their
``transaction.timeout.ms`` passes and pin the last stable offset of the output,
stalling every ``read_committed`` reader of it.

Where the record lives: ``run/transactional-prefixes.json`` (next to the
checkpoints and savepoints the prefix belongs with), keyed by bootstrap servers
and topic. Not a topic config, because brokers refuse config names they do not
know ("Unknown topic config name"), and not a topic of our own, because the
commands should not write into a user's cluster just to remember a name. The
price: the record knows only the runs submitted from this installation; the
warning therefore also asks the broker for open transactions on the output that
belong to another prefix, which sees every run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from onceflow.runtime.paths import run_dir

__all__ = ["JobOutputs", "check_prefix", "job_outputs", "record_prefix", "record_file"]

log = logging.getLogger(__name__)

# Flags naming a topic the job reads, not writes.
_INPUT_FLAGS = {"input_topic"}


@dataclass(frozen=True)
class JobOutputs:
    """What a job's command line says about its transactional outputs."""

    bootstrap: str
    prefix: str | None
    topics: tuple[str, ...]
    exactly_once: bool


def job_outputs(job_args: Sequence[str]) -> JobOutputs:
    """Read the prefix, bootstrap and output topics from a job's flags (and ``--config``).

    Every ``--<role>-topic`` flag except ``--input-topic`` is an output, so the
    jobs' own parsers need not be imported (nor kept in step with this).
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config")
    parser.add_argument("--bootstrap")
    parser.add_argument("--transactional-id-prefix")
    parser.add_argument("--guarantee")
    known, rest = parser.parse_known_args(list(job_args))
    values: dict[str, Any] = {}
    if known.config:
        try:
            loaded = yaml.safe_load(Path(known.config).read_text()) or {}
        except (OSError, yaml.YAMLError):
            loaded = {}
        if isinstance(loaded, dict):
            values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
    values.update({k: v for k, v in vars(known).items() if v is not None})
    for i, arg in enumerate(rest):
        name, eq, inline = arg.partition("=")
        if name.startswith("--") and name.endswith("-topic"):
            value = inline if eq else (rest[i + 1] if i + 1 < len(rest) else "")
            values[name[2:].replace("-", "_")] = value
    topics = tuple(
        sorted(
            str(v)
            for k, v in values.items()
            if k.endswith("_topic") and k not in _INPUT_FLAGS and v and not str(v).startswith("-")
        )
    )
    bootstrap = str(
        values.get("bootstrap") or os.environ.get("KAFKA_BOOTSTRAP") or "localhost:9092"
    )
    prefix = values.get("transactional_id_prefix")
    guarantee = str(values.get("guarantee") or "exactly-once")
    return JobOutputs(
        bootstrap, str(prefix) if prefix else None, topics, guarantee == "exactly-once"
    )


def record_file() -> Path:
    return run_dir() / "transactional-prefixes.json"


def _load(path: Path) -> dict[str, dict[str, Any]]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _key(bootstrap: str, topic: str) -> str:
    return f"{bootstrap}/{topic}"


def check_prefix(outputs: JobOutputs, *, path: Path | None = None, live: bool = True) -> list[str]:
    """Warnings for outputs last written with another prefix (empty: nothing to say).

    :param live: also ask the broker for open transactions of other prefixes on the
        outputs (skipped silently when the broker cannot be reached).
    """
    if not outputs.exactly_once or not outputs.prefix or not outputs.topics:
        return []
    record = _load(path or record_file())
    warnings: list[str] = []
    old_prefixes: dict[str, list[str]] = {}
    for topic in outputs.topics:
        last = record.get(_key(outputs.bootstrap, topic))
        if last and last.get("prefix") and last["prefix"] != outputs.prefix:
            old_prefixes.setdefault(str(last["prefix"]), []).append(topic)
    open_by_prefix: dict[str, int] = {}
    others_open: list[str] = []
    if live:
        try:
            from onceflow.ops.transactions import matches_prefix, open_transactions

            for txn in open_transactions(outputs.bootstrap):
                on_outputs = any(p.topic in outputs.topics for p in txn.partitions)
                if not on_outputs or matches_prefix(txn.transactional_id, outputs.prefix):
                    continue
                others_open.append(txn.transactional_id)
                for old in old_prefixes:
                    if matches_prefix(txn.transactional_id, old):
                        open_by_prefix[old] = open_by_prefix.get(old, 0) + 1
        except Exception as exc:  # noqa: BLE001 - a warning must never block a submission
            log.debug("could not list open transactions on %s: %r", outputs.bootstrap, exc)
    for old, topics in sorted(old_prefixes.items()):
        when = record[_key(outputs.bootstrap, topics[0])].get("at", "?")
        still_open = open_by_prefix.get(old, 0)
        warnings.append(
            f"{', '.join(topics)} was last written with transactional id prefix {old!r} "
            f"(submitted {when}); this job uses {outputs.prefix!r}. A Kafka sink aborts only "
            f"its own prefix's lingering transactions: {still_open} transaction(s) of "
            f"{old!r} are open on it now and stall read_committed readers until they time "
            f"out. If this job replaces the old one, keep {old!r} as its prefix; otherwise "
            f"once the old job is gone run `onceflow txn list --prefix {old}` and "
            f"`onceflow txn abort --prefix {old} --yes`."
        )
    strangers = [t for t in others_open if not any(matches_prefix(t, o) for o in old_prefixes)]
    if strangers:
        warnings.append(
            f"open transactions of another prefix write {', '.join(outputs.topics)}: "
            f"{', '.join(sorted(strangers)[:5])}{' ...' if len(strangers) > 5 else ''}; "
            "two jobs writing one topic with different prefixes both work, but a stopped "
            "one's open transactions stall read_committed readers: see `onceflow txn list`."
        )
    return warnings


def record_prefix(outputs: JobOutputs, job: str, *, path: Path | None = None) -> None:
    """Remember ``outputs.prefix`` as the last prefix of each output topic."""
    if not outputs.exactly_once or not outputs.prefix or not outputs.topics:
        return
    target = path or record_file()
    record = _load(target)
    at = time.strftime("%Y-%m-%d %H:%M:%S")
    for topic in outputs.topics:
        record[_key(outputs.bootstrap, topic)] = {"prefix": outputs.prefix, "job": job, "at": at}
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    tmp.replace(target)
