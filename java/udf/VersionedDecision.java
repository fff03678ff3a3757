package dev.onceflow.udf;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.StateTtlConfig;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.api.java.tuple.Tuple4;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * The versioned update's decision per entity key, in the JVM: onceflow's Python core ({@code
 * onceflow.operators.versioned.core.VersionedUpdateCore.apply}) said in Java, same checks in the
 * same order, same reasons, same state TTL.
 *
 * <p>Input: {@code Row(c, topic, partition, offset)}, {@code c} the change as Python parsed,
 * validated and encoded it (one call per record, {@code ChangeFunction}): {@code Row(k, version,
 * op, payload, content, expected, key_json, dl_key, dl)}, by position. {@code k} NULL: a dead
 * letter, written by Python ({@code dl_key}, {@code dl}), passed on to the dead-letter output
 * without touching state. Keyed by {@link EntityKey}.
 *
 * <p>State per key: {@code (version, content hash or "tombstone", deleted, written_ms)}, only an
 * applied change writes it. With a TTL the state expires {@code ttl_ms} after its last write
 * (Flink's state TTL, as on the Python path), and a read of state at least that old treats it as
 * absent and clears it (the core's own check).
 *
 * <p>Outputs: the main output has the applied changes as {@code Row(key, v)}, {@code v} the
 * payload's JSON or NULL for a delete (a tombstone); side outputs: stale and conflicting events
 * as {@code Row(key, report)}, the report byte for byte what {@code
 * onceflow.operators.versioned.output.outcome_report} writes; dead letters {@code Row(key, v)};
 * one applied-changes row per applied change. A repeat writes nothing.
 */
public final class VersionedDecision extends KeyedProcessFunction<String, Row, Row> {
    private static final long serialVersionUID = 1L;

    static final String COMPARE_AND_SET = "compare_and_set";
    static final String DELETE = "delete";

    private final boolean compareAndSet;
    private final long ttlMs;
    private final OutputTag<Row> stale;
    private final OutputTag<Row> conflicts;
    private final OutputTag<Row> deadLetters;
    private final OutputTag<Row> changes;

    private transient ValueState<Tuple4<Long, String, Boolean, Long>> state;
    private transient Counter applied;
    private transient Counter staleCount;
    private transient Counter conflictCount;
    private transient Counter repeats;
    private transient Counter expiredState;
    private transient Counter dlq;

    /**
     * @param mode {@code newer_wins} or {@code compare_and_set}
     * @param ttlMs the state's TTL after its last write, 0 for none
     */
    public VersionedDecision(
            String mode,
            long ttlMs,
            OutputTag<Row> stale,
            OutputTag<Row> conflicts,
            OutputTag<Row> deadLetters,
            OutputTag<Row> changes) {
        this.compareAndSet = COMPARE_AND_SET.equals(mode);
        this.ttlMs = ttlMs;
        this.stale = stale;
        this.conflicts = conflicts;
        this.deadLetters = deadLetters;
        this.changes = changes;
    }

    /** The key of a parsed change: its entity key, or a dead letter's source position. */
    public static final class EntityKey implements KeySelector<Row, String> {
        private static final long serialVersionUID = 1L;

        @Override
        public String getKey(Row record) {
            Row change = (Row) record.getField(0);
            Object key = change.getField(0);
            return key != null ? (String) key : "\u0000" + change.getField(7);
        }
    }

    @Override
    public void open(OpenContext openContext) {
        ValueStateDescriptor<Tuple4<Long, String, Boolean, Long>> descriptor =
                new ValueStateDescriptor<>(
                        "version_state",
                        Types.TUPLE(Types.LONG, Types.STRING, Types.BOOLEAN, Types.LONG));
        if (ttlMs > 0) {
            descriptor.enableTimeToLive(
                    StateTtlConfig.newBuilder(Duration.ofMillis(ttlMs))
                            .setUpdateType(StateTtlConfig.UpdateType.OnCreateAndWrite)
                            .setStateVisibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                            .build());
        }
        state = getRuntimeContext().getState(descriptor);
        MetricGroup metrics = getRuntimeContext().getMetricGroup();
        applied = metrics.counter("applied");
        staleCount = metrics.counter("stale");
        conflictCount = metrics.counter("conflicts");
        repeats = metrics.counter("repeats");
        expiredState = metrics.counter("expired_state");
        dlq = metrics.counter("dlq_records");
    }

    @Override
    public void processElement(Row record, Context ctx, Collector<Row> out) throws Exception {
        Row change = (Row) record.getField(0);
        String key = (String) change.getField(0);
        if (key == null) {
            dlq.inc();
            ctx.output(deadLetters, Row.of(change.getField(7), change.getField(8)));
            return;
        }
        long version = (Long) change.getField(1);
        String op = (String) change.getField(2);
        String content = (String) change.getField(4);
        Long expected = (Long) change.getField(5);
        long now = System.currentTimeMillis();
        Tuple4<Long, String, Boolean, Long> stored = state.value();
        boolean expired = false;
        if (stored != null && ttlMs > 0 && now - stored.f3 >= ttlMs) {
            state.clear();
            stored = null;
            expired = true;
        }
        if (expired) {
            expiredState.inc();
        }
        Long storedVersion = stored == null ? null : stored.f0;
        String kind = null;
        String reason = null;
        if (stored != null && version == stored.f0) {
            boolean same = content.equals(stored.f1) && DELETE.equals(op) == stored.f2;
            kind = same ? "repeat" : "conflict";
            reason = "version " + stored.f0 + " already applied with " + (same ? "this" : "other")
                    + " content";
        } else if (stored != null && version < stored.f0) {
            kind = "stale";
            reason = "version " + version + " is older than stored " + stored.f0;
        } else if (compareAndSet) {
            reason = unexpected(stored, expected);
            kind = reason == null ? null : "conflict";
        }
        if (kind == null) {
            boolean delete = DELETE.equals(op);
            state.update(Tuple4.of(version, content, delete, now));
            applied.inc();
            String payload = (String) change.getField(3);
            out.collect(Row.of(key, delete ? null : payload.getBytes(StandardCharsets.UTF_8)));
            ctx.output(changes, Row.of(key, version, op, payload, expected, storedVersion,
                    record.getField(1), record.getField(2), record.getField(3), now));
        } else if (kind.equals("repeat")) {
            repeats.inc();
        } else {
            boolean isStale = kind.equals("stale");
            (isStale ? staleCount : conflictCount).inc();
            String report = report(kind, reason, storedVersion, expired, record);
            ctx.output(isStale ? stale : conflicts,
                    Row.of(key, report.getBytes(StandardCharsets.UTF_8)));
        }
    }

    /** Compare-and-set: a conflict unless the writer has seen the current version. */
    private static String unexpected(Tuple4<Long, String, Boolean, Long> stored, Long expected) {
        if (expected == null) {
            if (stored != null && !stored.f2) {
                return "create, but the entity exists at version " + stored.f0;
            }
            return null;
        }
        if (stored == null) {
            return "expected version " + expected + ", but the entity does not exist";
        }
        if (!expected.equals(stored.f0)) {
            return "expected version " + expected + ", but stored is " + stored.f0;
        }
        return null;
    }

    /**
     * The report of a stale or conflicting event: canonical JSON (members sorted, no spaces),
     * the event from the pieces Python encoded (its payload and key JSON), the rest numbers and
     * ASCII text.
     */
    static String report(String kind, String reason, Long stored, boolean expired, Row record) {
        Row change = (Row) record.getField(0);
        Object payload = change.getField(3);
        Object topic = record.getField(1);
        return "{\"event\":{\"expected_version\":" + number(change.getField(5))
                + ",\"key\":" + change.getField(6)
                + ",\"op\":\"" + change.getField(2) + '"'
                + ",\"payload\":" + (payload == null ? "null" : payload)
                + ",\"version\":" + change.getField(1)
                + "},\"expired\":" + expired
                + ",\"outcome\":\"" + kind + '"'
                + ",\"reason\":\"" + reason + '"'
                + ",\"source\":{\"offset\":" + number(record.getField(3))
                + ",\"partition\":" + number(record.getField(2))
                + ",\"topic\":" + (topic == null ? "null" : jsonString((String) topic))
                + "},\"stored_version\":" + number(stored) + '}';
    }

    private static String number(Object value) {
        return value == null ? "null" : value.toString();
    }

    /** A JSON string as Python's {@code json.dumps} writes it (non-ASCII kept). */
    static String jsonString(String text) {
        StringBuilder out = new StringBuilder(text.length() + 2).append('"');
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            switch (c) {
                case '"': out.append("\\\""); break;
                case '\\': out.append("\\\\"); break;
                case '\n': out.append("\\n"); break;
                case '\r': out.append("\\r"); break;
                case '\t': out.append("\\t"); break;
                case '\b': out.append("\\b"); break;
                case '\f': out.append("\\f"); break;
                default:
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
            }
        }
        return out.append('"').toString();
    }
}
