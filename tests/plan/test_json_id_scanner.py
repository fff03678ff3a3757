"""onceflow's Java id scanner against Python's parse, record by record (JVM, no broker).

The JVM dedup path trusts the scanner's key (``s:<id>``/``i:<id>``) without any
Python: for every record it keys, Python must accept the record with exactly that
identity. NULL is conservative (the record goes to Python, which names its
reason), so the only records Python accepts without a key are the documented
ones: integers the scanner leaves to Python (an id over 1,000 digits, another
integer over 4,000). Every plain valid record must have its key.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hostile_corpus import cases_for
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from json_strategies import records, valid_record

from onceflow.operators.dedup.flink import sql_key_expression
from onceflow.operators.dedup.identity import IdentitySpec, identity_of
from onceflow.operators.records import Rejected, parse_object

MAX_BYTES = 65_536
SPEC = IdentitySpec.by_id("id")
LONG_INTEGER = re.compile(rb"\d{1001}")


@pytest.fixture(scope="module")
def scan() -> Any:
    """``scan(records, path) -> [key or None]``, computed by the Java scanner in Flink SQL."""
    from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment

    from onceflow.udf import register_udfs, udf_jar

    tenv = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    tenv.get_config().set("pipeline.jars", udf_jar().resolve().as_uri())
    register_udfs(tenv)
    schema = DataTypes.ROW(
        [DataTypes.FIELD("i", DataTypes.INT()), DataTypes.FIELD("v", DataTypes.BYTES())]
    )

    def keys(raws: list[bytes | None], path: str = "id") -> list[str | None]:
        rows = [(i, None if r is None else bytearray(r)) for i, r in enumerate(raws)]
        table = tenv.from_elements(rows, schema)
        key = sql_key_expression(path, MAX_BYTES, empty=False)
        with tenv.execute_sql(f"SELECT i, {key} FROM {table}").collect() as result:
            found = {row[0]: row[1] for row in result}
        return [found[i] for i in range(len(raws))]

    return keys


def _python_identity(raw: bytes | None, spec: IdentitySpec = SPEC) -> str | Rejected:
    parsed = parse_object(raw, MAX_BYTES)
    return parsed if isinstance(parsed, Rejected) else identity_of(parsed.value, spec)


def _check(raws: list[bytes | None], keys: list[str | None], *, all_valid: bool) -> None:
    for raw, key in zip(raws, keys, strict=True):
        ident = _python_identity(raw)
        if key is not None:
            assert key == ident, (raw, key, ident)
        elif isinstance(ident, str):
            # Python accepts what the scanner left to it: only the documented integers.
            assert raw is not None and LONG_INTEGER.search(raw), (raw, ident)
        if all_valid:
            assert key is not None, (raw, ident)


@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raws=records(150))
def test_scanner_keys_only_what_python_accepts_with_that_identity(
    scan: Any, raws: list[bytes]
) -> None:
    _check(raws, scan(raws), all_valid=False)


@settings(max_examples=1, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raws=st.lists(valid_record(), min_size=200, max_size=200))
def test_scanner_keys_every_plain_valid_record(scan: Any, raws: list[bytes]) -> None:
    _check(raws, scan(raws), all_valid=True)


def test_scanner_on_the_hostile_corpus(scan: Any) -> None:
    raws = [raw for _, raw, _ in cases_for("dedup")]
    keys = scan(raws)
    _check(raws, keys, all_valid=False)
    named = dict(zip((name for name, _, _ in cases_for("dedup")), keys, strict=True))
    assert named["duplicate_id_members"] == "s:dup-last"
    assert named["duplicate_id_object_then_string"] == "s:dup-obj"
    assert named["negative_zero_as_id"] == "i:0"
    assert named["valid_surrogate_pair_escape_in_id"] == "s:pair-\U0001f600"
    assert named["integer_longer_than_the_jvm_number_limit"] is None


def test_scanner_follows_dotted_paths_and_escaped_names(scan: Any) -> None:
    raws: list[bytes | None] = [
        b'{"meta":{"msg_id":"m-1"},"x":1}',
        b'{"meta":{"msg_id":"m-1"},"meta":{"other":2}}',
        b'{"meta":{"msg_\\u0069d":7}}',
        b'{"meta":[{"msg_id":"m-1"}]}',
        b'{"meta":{"msg_id":"m-1"}} x',
        None,
    ]
    keys = scan(raws, "meta.msg_id")
    assert keys == ["s:m-1", None, "i:7", None, None, None]
    spec = IdentitySpec.by_id("meta.msg_id")
    assert [_python_identity(r, spec) for r in raws[:3:2]] == ["s:m-1", "i:7"]
