package dev.onceflow.jdbc;

import java.io.IOException;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;

import javax.sql.XAConnection;
import javax.sql.XADataSource;
import javax.transaction.xa.XAException;
import javax.transaction.xa.XAResource;
import javax.transaction.xa.Xid;

import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.api.connector.sink2.CommittingSinkWriter;
import org.apache.flink.api.connector.sink2.StatefulSinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.types.Row;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The writer of {@link ExactlyOnceRowSink}: one XA transaction per checkpoint interval on its
 * own connection.
 *
 * <p>Steps: rows are buffered and executed in batches inside the open transaction (started on
 * the first batch, so an interval without rows prepares nothing); at the checkpoint barrier
 * ({@link #prepareCommit}) the rest is executed, the branch ended ({@code TMSUCCESS}) and
 * prepared, and its Xid handed to the committer; the next transaction opens with the next
 * batch. Nothing is visible before the checkpoint completes and the committer commits.
 *
 * <p>Leftovers on start ({@link #rollBackLeftovers}): after a crash, transactions prepared for a
 * checkpoint that never completed stay prepared (they survive even a server restart) and keep
 * their row locks. The rule: a writer restored from checkpoint {@code R} (0 for a fresh start)
 * rolls back this sink's prepared transactions whose label is greater than {@code R} and whose
 * subtask index, modulo the new parallelism, is its own. A transaction labelled {@code L} was
 * opened after the writer snapshotted checkpoint {@code L - 1}, so it is prepared at a barrier
 * {@code >= L}; when {@code L > R} that is after {@code R}: no committable of {@code R}, never to
 * be committed, whatever the parallelism was. A transaction labelled {@code <= R} was opened
 * before the writer snapshotted {@code R} and prepared at {@code R}'s barrier or earlier, so it is
 * one of {@code R}'s committables (or already committed): it is never touched here, the committer
 * commits it. The modulo spreads an old parallelism's leftovers over the new subtasks and never
 * lets a subtask roll back the new transactions of another (subtask {@code i} only opens Xids of
 * index {@code i}).
 *
 * <p>Hold-back ({@code holdBackWhilePending}, for upserts): while this writer's previous
 * transaction is prepared and not yet committed, its row locks would block an upsert of the same
 * key, and the commit runs in the same task (the committer is chained to the writer): the rows
 * are kept in memory instead; if the next barrier comes first they go into the writer state and
 * are written after it. Whether the previous transaction is still pending is read from the
 * server ({@code XAResource.recover}) at most every {@value #PENDING_CHECK_MS} ms.
 */
final class XaRowWriter implements CommittingSinkWriter<Row, PgXid>, StatefulSinkWriter<Row, byte[]> {

    private static final Logger LOG = LoggerFactory.getLogger(XaRowWriter.class);
    private static final long PENDING_CHECK_MS = 100;

    private final String sql;
    private final RowStatementBuilder statementBuilder;
    private final int batchSize;
    private final byte[] prefixHash;
    private final boolean holdBack;
    private final int subtask;
    private final TypeSerializer<Row> rowSerializer;
    private final boolean copyRows;

    private final XAConnection xaConnection;
    private final XAResource xa;
    private final Connection connection;
    private final PreparedStatement statement;

    private final List<Row> buffered = new ArrayList<>();
    private final List<PgXid> pending = new ArrayList<>();
    private PgXid current;
    private long lastSnapshotted;
    private long nextPendingCheck;

    XaRowWriter(
            WriterInitContext context,
            XADataSource dataSource,
            String sql,
            RowStatementBuilder statementBuilder,
            int batchSize,
            byte[] prefixHash,
            boolean holdBack,
            int timeoutSec,
            Collection<byte[]> heldRows)
            throws IOException {
        this.sql = sql;
        this.statementBuilder = statementBuilder;
        this.batchSize = batchSize;
        this.prefixHash = prefixHash;
        this.holdBack = holdBack;
        this.subtask = context.getTaskInfo().getIndexOfThisSubtask();
        this.rowSerializer = context.createInputSerializer();
        this.copyRows = context.isObjectReuseEnabled();
        this.lastSnapshotted = context.getRestoredCheckpointId().orElse(0L);
        try {
            this.xaConnection = dataSource.getXAConnection();
        } catch (SQLException e) {
            throw new IOException(
                    "the PostgreSQL sink's writer " + subtask + " could not connect: "
                            + XaErrors.describe(e),
                    e);
        }
        try {
            this.xa = xaConnection.getXAResource();
            if (timeoutSec > 0) {
                xa.setTransactionTimeout(timeoutSec);
            }
            this.connection = xaConnection.getConnection();
            rollBackLeftovers(context.getTaskInfo().getNumberOfParallelSubtasks());
            this.statement = connection.prepareStatement(sql);
        } catch (SQLException | XAException e) {
            closeQuietly(xaConnection);
            throw new IOException(
                    "the PostgreSQL sink's writer " + subtask + " could not open its XA connection "
                            + "or roll back leftovers: " + XaErrors.describe(e),
                    e);
        }
        for (byte[] blob : heldRows) {
            buffered.addAll(readRows(blob));
        }
        if (!buffered.isEmpty()) {
            LOG.info("subtask {}: {} held-back rows restored", subtask, buffered.size());
        }
    }

    /** Roll back this sink's leftovers the restored checkpoint can never commit (class doc). */
    private void rollBackLeftovers(int parallelism) throws XAException {
        long restored = lastSnapshotted;
        for (Xid found : xa.recover(XAResource.TMSTARTRSCAN | XAResource.TMENDRSCAN)) {
            PgXid own = PgXid.ownOrNull(found, prefixHash);
            if (own == null || own.label() <= restored || own.subtask() % parallelism != subtask) {
                continue;
            }
            try {
                xa.rollback(found);
                LOG.info(
                        "subtask {}: rolled back {}, prepared after the restored checkpoint {}",
                        subtask,
                        own,
                        restored);
            } catch (XAException e) {
                if (e.errorCode != XAException.XAER_NOTA) {
                    throw e;
                }
            }
        }
    }

    @Override
    public void write(Row row, Context context) throws IOException {
        buffered.add(copyRows ? rowSerializer.copy(row) : row);
        if (buffered.size() >= batchSize && !heldBack(false)) {
            executeBuffered();
        }
    }

    @Override
    public void flush(boolean endOfInput) {
        // Rows are executed in batches and at prepareCommit; nothing is committed here.
    }

    @Override
    public Collection<PgXid> prepareCommit() throws IOException {
        if (!heldBack(true)) {
            executeBuffered();
        }
        if (current == null) {
            return Collections.emptyList();
        }
        PgXid prepared = current;
        current = null;
        try {
            xa.end(prepared, XAResource.TMSUCCESS);
            if (xa.prepare(prepared) == XAResource.XA_RDONLY) {
                return Collections.emptyList(); // nothing written: nothing to commit
            }
        } catch (XAException e) {
            throw new IOException("could not prepare " + prepared + ": " + XaErrors.describe(e), e);
        }
        if (holdBack) {
            pending.add(prepared); // watched until committed (only the hold-back reads it)
        }
        return List.of(prepared);
    }

    @Override
    public List<byte[]> snapshotState(long checkpointId) throws IOException {
        lastSnapshotted = checkpointId;
        // Rows held back at this barrier belong to this checkpoint's state, not to a transaction.
        return buffered.isEmpty() ? List.of() : List.of(writeRows(buffered));
    }

    /**
     * True when rows must wait because a previous transaction is still prepared (hold-back
     * mode). {@code now} re-reads the server at once (the barrier), otherwise at most every
     * {@value #PENDING_CHECK_MS} ms.
     */
    private boolean heldBack(boolean now) throws IOException {
        if (!holdBack || pending.isEmpty() || current != null) {
            return false;
        }
        long clock = System.currentTimeMillis();
        if (!now && clock < nextPendingCheck) {
            return true;
        }
        nextPendingCheck = clock + PENDING_CHECK_MS;
        try {
            Xid[] prepared = xa.recover(XAResource.TMSTARTRSCAN | XAResource.TMENDRSCAN);
            pending.removeIf(
                    mine -> {
                        for (Xid x : prepared) {
                            if (mine.sameAs(x)) {
                                return false;
                            }
                        }
                        return true;
                    });
        } catch (XAException e) {
            throw new IOException("could not list prepared transactions: " + XaErrors.describe(e), e);
        }
        return !pending.isEmpty();
    }

    private void executeBuffered() throws IOException {
        if (buffered.isEmpty()) {
            return;
        }
        try {
            if (current == null) {
                current = PgXid.of(prefixHash, subtask, lastSnapshotted + 1);
                xa.start(current, XAResource.TMNOFLAGS);
            }
            int inBatch = 0;
            for (Row row : buffered) {
                statementBuilder.accept(statement, row);
                statement.addBatch();
                if (++inBatch == batchSize) {
                    statement.executeBatch();
                    inBatch = 0;
                }
            }
            if (inBatch > 0) {
                statement.executeBatch();
            }
            buffered.clear();
        } catch (SQLException | XAException e) {
            throw new IOException(
                    "the PostgreSQL sink's writer " + subtask + " failed to write a batch in "
                            + current + ": " + XaErrors.describe(e),
                    e);
        }
    }

    private byte[] writeRows(List<Row> rows) throws IOException {
        DataOutputSerializer out = new DataOutputSerializer(1024);
        out.writeInt(rows.size());
        for (Row row : rows) {
            rowSerializer.serialize(row, out);
        }
        return out.getCopyOfBuffer();
    }

    private List<Row> readRows(byte[] blob) throws IOException {
        DataInputDeserializer in = new DataInputDeserializer(blob);
        int count = in.readInt();
        List<Row> rows = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            rows.add(rowSerializer.deserialize(in));
        }
        return rows;
    }

    /**
     * Closes the connection. A transaction still open (not prepared) ends with its session:
     * the server rolls it back. Prepared ones stay for the committer or the next start.
     */
    @Override
    public void close() throws Exception {
        try {
            statement.close();
        } finally {
            xaConnection.close();
        }
    }

    private static void closeQuietly(XAConnection connection) {
        try {
            connection.close();
        } catch (SQLException e) {
            LOG.debug("closing the connection of a writer that failed to start", e);
        }
    }

    @Override
    public String toString() {
        return "XaRowWriter{subtask=" + subtask + ", sql=" + sql + "}";
    }
}
