package dev.onceflow.jdbc;

import java.io.IOException;
import java.util.Collection;
import java.util.List;

import javax.sql.XADataSource;

import org.apache.flink.api.connector.sink2.Committer;
import org.apache.flink.api.connector.sink2.CommitterInitContext;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.StatefulSinkWriter;
import org.apache.flink.api.connector.sink2.SupportsCommitter;
import org.apache.flink.api.connector.sink2.SupportsWriterState;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.types.Row;
import org.apache.flink.util.function.SerializableSupplier;

/**
 * An exactly-once sink of {@link Row}s into PostgreSQL on Flink's own two-phase-commit
 * framework (Sink V2): Flink drives the protocol, this sink only speaks XA to the server.
 *
 * <ul>
 *   <li>{@link XaRowWriter}: one XA transaction per subtask per checkpoint interval, on its own
 *       connection; at the checkpoint barrier ({@code prepareCommit}) it is ended and prepared
 *       and its {@link PgXid} becomes the committable, kept in the checkpoint.
 *   <li>{@link XaCommitter}: once the checkpoint completes, commits each Xid ({@code COMMIT
 *       PREPARED}); after a restore, the restored checkpoint's committables again (an
 *       already-committed one is done).
 *   <li>On every start the writer rolls back this sink's own leftovers that the restored
 *       checkpoint can never commit (see {@link XaRowWriter} for the rule, safe under rescaling).
 * </ul>
 *
 * <p>Writer state: rows a {@code versioned} writer held back (see {@link XaRowWriter}), written
 * again after a restore.
 */
public final class ExactlyOnceRowSink
        implements Sink<Row>,
                SupportsCommitter<PgXid>,
                SupportsWriterState<Row, byte[]> {

    private static final long serialVersionUID = 1L;

    private final SerializableSupplier<XADataSource> dataSource;
    private final String sql;
    private final RowStatementBuilder statementBuilder;
    private final int batchSize;
    private final String xidPrefix;
    private final boolean holdBackWhilePending;
    private final int timeoutSec;

    /**
     * @param xidPrefix stable and unique per sink (its database, table and uid by default):
     *     every Xid starts with its hash, and a writer rolls back only leftovers with it
     * @param holdBackWhilePending don't execute the next transaction's rows while the previous
     *     one is prepared and uncommitted (its row locks would block them, and the commit runs
     *     in the same task): for upserts
     * @param timeoutSec XA transaction timeout, 0 for the server's default
     */
    public ExactlyOnceRowSink(
            SerializableSupplier<XADataSource> dataSource,
            String sql,
            RowStatementBuilder statementBuilder,
            int batchSize,
            String xidPrefix,
            boolean holdBackWhilePending,
            int timeoutSec) {
        if (batchSize <= 0) {
            throw new IllegalArgumentException("batchSize must be positive");
        }
        if (xidPrefix == null || xidPrefix.isEmpty()) {
            throw new IllegalArgumentException("the Xid prefix must be set (stable per sink)");
        }
        this.dataSource = dataSource;
        this.sql = sql;
        this.statementBuilder = statementBuilder;
        this.batchSize = batchSize;
        this.xidPrefix = xidPrefix;
        this.holdBackWhilePending = holdBackWhilePending;
        this.timeoutSec = timeoutSec;
    }

    @Override
    public StatefulSinkWriter<Row, byte[]> createWriter(WriterInitContext context) throws IOException {
        return restoreWriter(context, List.of());
    }

    @Override
    public StatefulSinkWriter<Row, byte[]> restoreWriter(
            WriterInitContext context, Collection<byte[]> recoveredState) throws IOException {
        return new XaRowWriter(
                context,
                dataSource.get(),
                sql,
                statementBuilder,
                batchSize,
                PgXid.prefixHash(xidPrefix),
                holdBackWhilePending,
                timeoutSec,
                recoveredState);
    }

    @Override
    public SimpleVersionedSerializer<byte[]> getWriterStateSerializer() {
        return new HeldRowsSerializer();
    }

    @Override
    public Committer<PgXid> createCommitter(CommitterInitContext context) {
        return new XaCommitter(dataSource.get());
    }

    @Override
    public SimpleVersionedSerializer<PgXid> getCommittableSerializer() {
        return new PgXidSerializer();
    }

    @Override
    public String toString() {
        return "ExactlyOnceRowSink{" + dataSource + ", batchSize=" + batchSize + "}";
    }

    /** Writer state: one opaque blob of held-back rows per subtask (version 1). */
    static final class HeldRowsSerializer implements SimpleVersionedSerializer<byte[]> {
        @Override
        public int getVersion() {
            return 1;
        }

        @Override
        public byte[] serialize(byte[] rows) {
            return rows;
        }

        @Override
        public byte[] deserialize(int version, byte[] serialized) throws IOException {
            if (version != 1) {
                throw new IOException("unknown writer state version " + version);
            }
            return serialized;
        }
    }
}
