package dev.onceflow.udf;

import java.nio.charset.StandardCharsets;
import org.apache.flink.metrics.Counter;
import org.apache.flink.table.annotation.ArgumentHint;
import org.apache.flink.table.annotation.ArgumentTrait;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.annotation.StateHint;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ProcessTableFunction;
import org.apache.flink.types.Row;

/**
 * The versioned update's decision per entity key, in the JVM: onceflow's Python core ({@code
 * onceflow.operators.versioned.core.VersionedUpdateCore.apply}) said in Java, same checks, same
 * order, same reasons.
 *
 * <p>A process table function over change events already parsed and validated in Python (one
 * call per record), partitioned by entity key. Input columns, by position: {@code k} (the
 * entity key), {@code version}, {@code op} ({@code upsert} / {@code delete}), {@code payload}
 * (the payload's canonical JSON, or NULL), {@code content} (the payload's hash, or {@code
 * tombstone} for a delete), {@code expected} (the expected version, or NULL: a create), {@code
 * key_json} (the key as JSON text, in the report's escaping), {@code topic}, {@code partition},
 * {@code offset} (the source position). Per key one state: the last applied version, its
 * content hash, whether it was a delete and the processing time of that write.
 *
 * <p>Output per event (after the key): {@code kind} ({@code applied}, {@code stale}, {@code
 * conflict}; a repeat writes nothing) and {@code v}: for an applied upsert the payload's JSON
 * (NULL for a delete: a tombstone), for a stale or conflicting event the report, byte for byte
 * what {@code onceflow.operators.versioned.output.outcome_report} writes; an applied event also
 * fills the applied-changes columns. With a TTL, state whose last applied write is at least
 * {@code ttl_ms} old reads as absent and is cleared, as on the Python path.
 */
@FunctionHint(
        output =
                @DataTypeHint(
                        "ROW<kind STRING, v BYTES, version BIGINT, op STRING, payload_json STRING,"
                                + " expected_version BIGINT, replaced_version BIGINT, source_topic"
                                + " STRING, source_partition INT, source_offset BIGINT, applied_ms"
                                + " BIGINT>"))
public final class VersionedDecision extends ProcessTableFunction<Row> {
    private static final long serialVersionUID = 1L;

    static final String NEWER_WINS = "newer_wins";
    static final String COMPARE_AND_SET = "compare_and_set";
    static final String DELETE = "delete";
    static final String TOMBSTONE = "tombstone";

    /** One entity's state; all fields NULL: no state. */
    public static final class EntityState {
        public Long version;
        public String hash;
        public Boolean deleted;
        public Long writtenMs;
    }

    private transient Counter applied;
    private transient Counter stale;
    private transient Counter conflicts;
    private transient Counter repeats;
    private transient Counter expiredState;

    @Override
    public void open(FunctionContext context) {
        applied = context.getMetricGroup().counter("applied");
        stale = context.getMetricGroup().counter("stale");
        conflicts = context.getMetricGroup().counter("conflicts");
        repeats = context.getMetricGroup().counter("repeats");
        expiredState = context.getMetricGroup().counter("expired_state");
    }

    public void eval(
            @StateHint(name = "entity") EntityState state,
            @ArgumentHint(value = ArgumentTrait.SET_SEMANTIC_TABLE, name = "input") Row input,
            @ArgumentHint(name = "mode") String mode,
            @ArgumentHint(name = "ttl_ms") Long ttlMs) {
        long version = input.<Long>getFieldAs(1);
        String op = input.getFieldAs(2);
        String payload = input.getFieldAs(3);
        String content = input.getFieldAs(4);
        Long expected = input.getFieldAs(5);
        long now = System.currentTimeMillis();
        boolean expired = false;
        if (state.version != null && ttlMs != null && ttlMs > 0 && now - state.writtenMs >= ttlMs) {
            clear(state);
            expired = true;
            expiredState.inc();
        }
        Long stored = state.version;
        String refusal = null;
        String kind = null;
        if (stored != null && version == stored) {
            boolean same = content.equals(state.hash) && DELETE.equals(op) == state.deleted;
            kind = same ? "repeat" : "conflict";
            refusal = "version " + stored + " already applied with " + (same ? "this" : "other")
                    + " content";
        } else if (stored != null && version < stored) {
            kind = "stale";
            refusal = "version " + version + " is older than stored " + stored;
        } else if (COMPARE_AND_SET.equals(mode)) {
            refusal = unexpected(state, expected);
            kind = refusal == null ? null : "conflict";
        }
        if (kind == null) {
            state.version = version;
            state.hash = content;
            state.deleted = DELETE.equals(op);
            state.writtenMs = now;
            applied.inc();
            byte[] value = DELETE.equals(op) ? null : payload.getBytes(StandardCharsets.UTF_8);
            collect(Row.of("applied", value, version, op, payload, expected, stored,
                    input.getField(7), input.getField(8), input.getField(9), now));
            return;
        }
        if (kind.equals("repeat")) {
            repeats.inc();
            return;
        }
        (kind.equals("stale") ? stale : conflicts).inc();
        byte[] report = report(kind, refusal, stored, expired, input).getBytes(StandardCharsets.UTF_8);
        collect(Row.of(kind, report, null, null, null, null, null, null, null, null, null));
    }

    private static void clear(EntityState state) {
        state.version = null;
        state.hash = null;
        state.deleted = null;
        state.writtenMs = null;
    }

    /** Compare-and-set: a conflict unless the writer has seen the current version. */
    private static String unexpected(EntityState state, Long expected) {
        if (expected == null) {
            if (state.version != null && !state.deleted) {
                return "create, but the entity exists at version " + state.version;
            }
            return null;
        }
        if (state.version == null) {
            return "expected version " + expected + ", but the entity does not exist";
        }
        if (!expected.equals(state.version)) {
            return "expected version " + expected + ", but stored is " + state.version;
        }
        return null;
    }

    /**
     * The report of a stale or conflicting event: canonical JSON (members sorted, no spaces),
     * the event from the fields Python encoded (its payload and key JSON), the rest numbers and
     * ASCII text.
     */
    static String report(String kind, String reason, Long stored, boolean expired, Row input) {
        StringBuilder out = new StringBuilder(256);
        out.append("{\"event\":{\"expected_version\":").append(number(input.getField(5)));
        out.append(",\"key\":").append((String) input.getField(6));
        out.append(",\"op\":\"").append((String) input.getField(2)).append('"');
        Object payload = input.getField(3);
        out.append(",\"payload\":").append(payload == null ? "null" : (String) payload);
        out.append(",\"version\":").append(input.getField(1)).append('}');
        out.append(",\"expired\":").append(expired);
        out.append(",\"outcome\":\"").append(kind).append('"');
        out.append(",\"reason\":\"").append(reason).append('"');
        out.append(",\"source\":{\"offset\":").append(number(input.getField(9)));
        out.append(",\"partition\":").append(number(input.getField(8)));
        Object topic = input.getField(7);
        out.append(",\"topic\":").append(topic == null ? "null" : jsonString((String) topic));
        out.append("},\"stored_version\":").append(number(stored)).append('}');
        return out.toString();
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
