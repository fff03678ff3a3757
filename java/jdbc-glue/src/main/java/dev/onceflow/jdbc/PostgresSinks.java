package dev.onceflow.jdbc;

import java.util.Optional;

import org.apache.flink.connector.jdbc.JdbcConnectionOptions;
import org.apache.flink.connector.jdbc.JdbcExactlyOnceOptions;
import org.apache.flink.connector.jdbc.JdbcExecutionOptions;
import org.apache.flink.connector.jdbc.core.datastream.sink.JdbcSink;
import org.apache.flink.types.Row;

/**
 * Static factories the Python side calls through py4j: Flink's {@link JdbcSink} over
 * {@link Row}s for PostgreSQL, exactly-once (XA) or at-least-once.
 *
 * <p>Only wiring: the two-phase commit (prepare on checkpoint, commit when it completes,
 * recovery of prepared transactions) is the connector's XA writer and committer.
 */
public final class PostgresSinks {

    private PostgresSinks() {}

    /**
     * An exactly-once sink: the rows between two checkpoints go into one XA transaction per
     * subtask, prepared at the checkpoint barrier and committed when the checkpoint completes.
     *
     * @param sql the parameterised INSERT statement, one {@code ?} per row field
     * @param jdbcTypes comma-separated JDBC type names of the row fields
     * @param batchSize rows per JDBC batch inside the transaction
     * @param rewriteBatchedInserts send a batch as multi-row INSERTs (not for upserts: one
     *     statement may not update the same row twice)
     * @param recoverAndRollback roll back this job's prepared transactions that no checkpoint
     *     covers when a writer starts; must be false for a run that changes the sink's
     *     parallelism (connector javadoc: data loss otherwise)
     * @param timeoutSec the XA transaction timeout in seconds, or 0 for the server's default
     */
    public static JdbcSink<Row> exactlyOnce(
            String url,
            String user,
            String password,
            String sql,
            String jdbcTypes,
            int batchSize,
            boolean rewriteBatchedInserts,
            boolean recoverAndRollback,
            int timeoutSec) {
        JdbcExecutionOptions execution =
                JdbcExecutionOptions.builder()
                        .withBatchSize(batchSize)
                        // Enforced by the XA writer: a retried batch could be applied twice.
                        .withMaxRetries(0)
                        .build();
        JdbcExactlyOnceOptions exactlyOnce =
                JdbcExactlyOnceOptions.builder()
                        // PostgreSQL allows one XA transaction per connection, and a
                        // prepared transaction waits for its checkpoint while the next one
                        // runs: one pooled connection per transaction.
                        .withTransactionPerConnection(true)
                        .withRecoveredAndRollback(recoverAndRollback)
                        .withTimeoutSec(timeoutSec > 0 ? Optional.of(timeoutSec) : Optional.empty())
                        .build();
        return JdbcSink.<Row>builder()
                .withQueryStatement(sql, new RowStatementBuilder(jdbcTypes))
                .withExecutionOptions(execution)
                .buildExactlyOnce(exactlyOnce, new PgXaDataSourceSupplier(url, user, password, rewriteBatchedInserts));
    }

    /**
     * An at-least-once sink: batches are flushed when full, after {@code batchIntervalMs} and at
     * every checkpoint, each committed on its own; a replay after a failure writes again what
     * was flushed since the last completed checkpoint.
     */
    public static JdbcSink<Row> atLeastOnce(
            String url,
            String user,
            String password,
            String sql,
            String jdbcTypes,
            int batchSize,
            boolean rewriteBatchedInserts,
            long batchIntervalMs,
            int maxRetries) {
        JdbcConnectionOptions.JdbcConnectionOptionsBuilder connection =
                new JdbcConnectionOptions.JdbcConnectionOptionsBuilder()
                        .withUrl(url)
                        .withDriverName("org.postgresql.Driver")
                        .withProperty(
                                "reWriteBatchedInserts", Boolean.toString(rewriteBatchedInserts));
        if (user != null && !user.isEmpty()) {
            connection.withUsername(user);
        }
        if (password != null && !password.isEmpty()) {
            connection.withPassword(password);
        }
        JdbcExecutionOptions execution =
                JdbcExecutionOptions.builder()
                        .withBatchSize(batchSize)
                        .withBatchIntervalMs(batchIntervalMs)
                        .withMaxRetries(maxRetries)
                        .build();
        return JdbcSink.<Row>builder()
                .withQueryStatement(sql, new RowStatementBuilder(jdbcTypes))
                .withExecutionOptions(execution)
                .buildAtLeastOnce(connection.build());
    }
}
