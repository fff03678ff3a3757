"""Write a deterministic workload (:mod:`onceflow.testing.workload`) to a Kafka topic.

``onceflow produce`` feeds the dedup job: it creates the input topic if it is
missing, writes the records with an idempotent producer and saves the
:class:`~onceflow.testing.workload.Expectation` that ``onceflow check`` later compares
the job's output with.

Delivery guarantee: every record is written exactly once and, per key, in
generation order -- ``acks=all`` plus the idempotent producer (KIP-98) make
the producer's internal retries neither duplicate nor reorder a batch. The
producer is *not* transactional: the input topic needs no read_committed
reader. Valid records are keyed by their id, so a duplicate lands in the same
partition as its original, after it; malformed records have no key.

``--format avro`` writes the same workload in Avro (:mod:`onceflow.testing.avro_workload`):
the record schema is registered under ``<topic>-value`` (Confluent's TopicNameStrategy,
``--subject`` to change it) in a Confluent-compatible registry (the local stack's with
``onceflow stack up --registry``, or ``--registry-url``) and each record is framed with
its id.

Failure behaviour: a record the broker refuses (topic too small for an
oversize record, authorisation, timeout) fails the whole run with
:class:`ProduceError`; the expectation is saved only when every record has
been acknowledged, so a saved expectation always describes the topic's
content (for a topic that was empty before).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from kafka import KafkaProducer
from kafka.errors import KafkaError
from tqdm import tqdm

from onceflow.errors import OnceflowError
from onceflow.testing.workload import Expectation, WorkItem, WorkloadSpec, generate

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "VALUE_FORMATS",
    "ProduceError",
    "default_registry_url",
    "add_arguments",
    "produce",
    "run",
]

log = logging.getLogger(__name__)

#: Bootstrap servers when neither ``--bootstrap`` nor ``KAFKA_BOOTSTRAP`` is given.
DEFAULT_BOOTSTRAP = "localhost:9092"

_KAFKA_MAX_MESSAGE_BYTES = 1_048_588  # broker default message.max.bytes / topic max.message.bytes
_PRODUCER_MAX_REQUEST_SIZE = 1_048_576  # kafka-python default max_request_size
_RECORD_OVERHEAD = 4_096  # headroom for the record batch header, key and headers
_ERROR_CHECK_EVERY = 1_024  # records between two looks at the error counter
_PROGRESS_EVERY = 512  # records between two progress-bar updates


#: Encodings of the workload's records.
VALUE_FORMATS = ("json", "avro")


def default_registry_url() -> str:
    """``$ONCEFLOW_REGISTRY_URL`` or the local stack's registry (``onceflow stack up
    --registry``, port ``$ONCEFLOW_REGISTRY_PORT``)."""
    from onceflow.local.registry import RegistrySettings, default_registry_port

    return os.environ.get(
        "ONCEFLOW_REGISTRY_URL", RegistrySettings(port=default_registry_port()).url
    )


class ProduceError(OnceflowError):
    """Some records were refused or never acknowledged: the topic is incomplete."""


class _Errors:
    """Counts failed sends; called from the producer's I/O thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.first: BaseException | None = None

    def __call__(self, exc: BaseException) -> None:
        with self._lock:
            self.count += 1
            if self.first is None:
                self.first = exc


def _max_record_bytes(spec: WorkloadSpec) -> int:
    """Largest record the workload holds, plus headroom."""
    largest = spec.payload_bytes
    if spec.oversize > 0:
        largest = max(largest, spec.oversize_bytes)
    return largest + _RECORD_OVERHEAD


def _ensure_input_topic(
    bootstrap: str, topic: str, partitions: int | None, max_record_bytes: int
) -> None:
    """Create ``topic`` unless it exists, sized for records of ``max_record_bytes``.

    An existing topic is left alone; a partition count other than ``partitions``
    (when given) is logged as a warning.
    """
    from onceflow.runtime.topics import ensure_topics, partition_count

    configs: dict[str, str] = {}
    if max_record_bytes > _KAFKA_MAX_MESSAGE_BYTES:
        configs["max.message.bytes"] = str(max_record_bytes)
    if ensure_topics(bootstrap, {topic: configs}, partitions or 1):
        return
    have = partition_count(bootstrap, topic)
    if partitions is not None and have != partitions:
        log.warning(
            "topic %s already exists with %s partitions, not the %d asked for: writing to it "
            "as it is (delete it first to change the partition count)",
            topic,
            have,
            partitions,
        )


def produce(
    bootstrap: str,
    topic: str,
    spec: WorkloadSpec,
    expectation_path: Path | None,
    partitions: int | None = None,
    progress: bool = True,
    rate: float | None = None,
    value_format: str = "json",
    registry_url: str | None = None,
    subject: str | None = None,
) -> Expectation:
    """Write the workload of ``spec`` to ``topic`` and return (and save) its expectation.

    Protocol:

    1. For Avro, register the record schema (:func:`_register_schema`); create the topic
       if missing (``partitions`` default 1, replication 1).
    2. Send every record through an idempotent ``acks=all`` producer, keyed by
       id (malformed: no key), at most ``rate`` records/s if given; failed sends
       are counted by an errback, not by waiting on each future.
    3. Flush, then fail if any send failed.
    4. Save the expectation to ``expectation_path`` (if given).

    :param bootstrap: Kafka bootstrap servers, ``host:port[,host:port]``.
    :param expectation_path: where to save the expectation (``.gz`` compresses).
    :param progress: show a progress bar on stderr (only on a terminal).
    :param rate: steady feeding rate in records/s; ``None`` is as fast as possible.
    :param value_format: ``json`` or ``avro`` (see the module docstring).
    :param registry_url: the registry's Confluent-compatible API (Avro only); default
        :func:`default_registry_url`.
    :param subject: the subject to register the schema under (Avro only); default
        ``<topic>-value``.
    :raises OnceflowError: (Avro) the registry is unreachable or refuses the schema.
    :raises ProduceError: if a record was refused or not acknowledged in time.
        Records sent before the failure may be in the topic; no expectation is saved.
    :raises kafka.errors.KafkaError: if the broker cannot be reached.
    """
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be > 0 records/s, got {rate}")
    if value_format not in VALUE_FORMATS:
        raise ValueError(f"value format {value_format!r} is not one of {VALUE_FORMATS}")
    max_record = _max_record_bytes(spec)
    # The schema before the topic: a refused schema leaves no empty topic behind.
    items = _records(spec, value_format, registry_url, subject or f"{topic}-value")
    _ensure_input_topic(bootstrap, topic, partitions, max_record)
    producer = _idempotent_producer(bootstrap, max_record)
    errors = _Errors()
    expectation = Expectation(spec=spec.to_dict(), value_format=value_format)
    sent, elapsed = _send_all(producer, topic, spec, items, expectation, errors, progress, rate)
    if errors.count or sent != spec.count:
        raise ProduceError(
            f"{errors.count} of {sent} records sent to {topic} failed "
            f"({spec.count - sent} not sent); first error: {errors.first!r}. "
            "The topic holds an incomplete workload: delete it (or use a new topic) "
            "and produce again"
        )
    log.info(
        "produced %d records to %s in %.1f s (%.0f records/s): %d unique, %d duplicates, "
        "%d malformed",
        sent,
        topic,
        elapsed,
        sent / elapsed if elapsed else float("inf"),
        len(expectation.unique_ids),
        expectation.duplicates,
        expectation.malformed,
    )
    if expectation_path is not None:
        expectation.save(expectation_path)
    return expectation


RECONNECT_BACKOFF_MAX_MS = 1000
"""Longest wait between reconnect attempts of onceflow's Python Kafka clients."""


def _idempotent_producer(bootstrap: str, max_record: int) -> KafkaProducer:
    """A producer that writes each record once, in order per partition, to existing topics."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        # Exactly-once writes of the input: no duplicates from retries, no
        # reordering within a partition (duplicates must follow their original).
        enable_idempotence=True,
        acks="all",
        linger_ms=20,
        batch_size=512 * 1024,
        # produce() created the topic; a typo must not create another one.
        allow_auto_create_topics=False,
        max_request_size=max(_PRODUCER_MAX_REQUEST_SIZE, max_record),
        # kafka-python backs off reconnects up to 30 s by default: after a broker
        # restart the feed would pause for seconds after the broker is back (the
        # verifier measured that pause as the job's stall). The Java clients' cap.
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
    )


def _records(
    spec: WorkloadSpec, value_format: str, registry_url: str | None, subject: str
) -> Iterator[WorkItem]:
    """The workload's records in ``value_format`` (Avro: the schema registered first)."""
    if value_format != "avro":
        return generate(spec)
    from onceflow.testing.avro_workload import avro_items

    schema_id = _register_schema(registry_url or default_registry_url(), subject, spec)
    return avro_items(spec, schema_id)


def _register_schema(registry_url: str, subject: str, spec: WorkloadSpec) -> int:
    """Register the Avro workload's schema under ``subject``; its id.

    :raises OnceflowError: the id field cannot be an Avro field, the registry is not
        reachable, or it refuses the schema (e.g. incompatible with the subject's versions).
    """
    from onceflow.avro.registry import SchemaRegistry
    from onceflow.testing.avro_workload import workload_schema

    try:
        schema = workload_schema(spec.id_field)
    except ValueError as exc:
        raise OnceflowError(str(exc)) from exc
    schema_id = SchemaRegistry(registry_url).register(subject, schema)
    log.info("workload schema registered under %s: id %d", subject, schema_id)
    return schema_id


def _send_all(
    producer: KafkaProducer,
    topic: str,
    spec: WorkloadSpec,
    items: Iterator[WorkItem],
    expectation: Expectation,
    errors: _Errors,
    progress: bool,
    rate: float | None,
) -> tuple[int, float]:
    """Send every record (at most ``rate``/s), flush, close; returns records sent and seconds.

    Failed sends are counted by ``errors`` (an errback), not by waiting on each future;
    the loop stops early once it sees one. The producer is closed in every case.
    """
    bar = tqdm(
        total=spec.count,
        unit="rec",
        unit_scale=True,
        desc=f"produce {topic}",
        file=sys.stderr,
        disable=None if progress else True,  # None: off when stderr is not a terminal
        mininterval=0.5,
    )
    started = time.monotonic()
    sent = 0
    try:
        for item in items:
            if rate is not None:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0.001:
                    time.sleep(ahead)
            key = item.ident.encode("utf-8") if item.ident is not None else None
            producer.send(topic, value=item.value, key=key).add_errback(errors)
            expectation.add(item)
            sent += 1
            if sent % _PROGRESS_EVERY == 0:
                bar.update(_PROGRESS_EVERY)
            if sent % _ERROR_CHECK_EVERY == 0 and errors.count:
                break  # fail fast: the topic is misconfigured or unreachable
        producer.flush()
        bar.update(sent - bar.n)
    finally:
        bar.close()
        producer.close(timeout=10)
    return sent, time.monotonic() - started


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``onceflow produce`` options to ``parser``."""
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP or %(default)s)",
    )
    parser.add_argument("--topic", required=True, help="topic to write (created if missing)")
    parser.add_argument("--count", type=int, default=100_000, help="records in total (%(default)s)")
    parser.add_argument(
        "--duplicates",
        type=float,
        default=0.3,
        metavar="RATIO",
        help="share of duplicate records (%(default)s)",
    )
    parser.add_argument(
        "--malformed",
        type=float,
        default=0.01,
        metavar="RATIO",
        help="share of malformed records (%(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (%(default)s)")
    parser.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="partitions of a new topic (default 1; an existing topic is kept)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="RECORDS_PER_S",
        help="steady feeding rate (default: as fast as possible)",
    )
    parser.add_argument(
        "--expect",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the expectation for `onceflow check` here (.gz compresses)",
    )
    parser.add_argument("--id-field", default="id", help="JSON field of the id (%(default)s)")
    parser.add_argument(
        "--payload-bytes", type=int, default=200, help="approximate record size (%(default)s)"
    )
    parser.add_argument(
        "--keys",
        type=int,
        default=None,
        help="duplicates repeat one of the last KEYS unique ids (default 10000)",
    )
    parser.add_argument(
        "--oversize-bytes",
        type=int,
        default=600_000,
        help="size an oversize malformed record exceeds (%(default)s)",
    )
    parser.add_argument(
        "--format",
        choices=VALUE_FORMATS,
        default="json",
        help="record encoding; avro registers the schema and frames records with its id "
        "(%(default)s)",
    )
    parser.add_argument(
        "--registry-url",
        default=None,
        help="Avro: the schema registry's Confluent-compatible API (default: "
        "$ONCEFLOW_REGISTRY_URL or the local stack's)",
    )
    parser.add_argument(
        "--subject", default=None, help="Avro: the schema's subject (default: <topic>-value)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``onceflow produce``.

    :returns: 0 once every record is acknowledged and the expectation saved.
    :raises OnceflowError: (exit 2 in the CLI) on an invalid workload, an
        unreachable broker or refused records.
    """
    try:
        spec = WorkloadSpec(
            count=args.count,
            duplicate_ratio=args.duplicates,
            malformed_ratio=args.malformed,
            seed=args.seed,
            id_field=args.id_field,
            payload_bytes=args.payload_bytes,
            keys=args.keys,
            oversize_bytes=args.oversize_bytes,
        )
    except ValueError as exc:
        raise OnceflowError(f"invalid workload: {exc}") from exc
    try:
        exp = produce(
            args.bootstrap,
            args.topic,
            spec,
            args.expect,
            partitions=args.partitions,
            progress=not args.no_progress,
            rate=args.rate,
            value_format=args.format,
            registry_url=args.registry_url,
            subject=args.subject,
        )
    except KafkaError as exc:
        raise OnceflowError(
            f"producing to {args.topic} at {args.bootstrap} failed: {exc!r}; is the broker "
            "running (`onceflow stack up`) and --bootstrap / $KAFKA_BOOTSTRAP right?"
        ) from exc
    except ValueError as exc:
        raise OnceflowError(str(exc)) from exc
    where = f"; expectation in {args.expect}" if args.expect else ""
    print(
        f"produced {exp.total} {args.format} records to {args.topic}: "
        f"{len(exp.unique_ids)} unique, "
        f"{exp.duplicates} duplicates, {exp.malformed} malformed{where}"
    )
    return 0
