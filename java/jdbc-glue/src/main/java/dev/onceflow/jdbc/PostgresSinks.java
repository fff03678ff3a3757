package dev.onceflow.jdbc;

import org.apache.flink.connector.jdbc.JdbcConnectionOptions;
import org.apache.flink.connector.jdbc.JdbcExactlyOnceOptions;
import org.apache.flink.connector.jdbc.JdbcExecutionOptions;
import org.apache.flink.connector.jdbc.core.datastream.sink.JdbcSink;
import org.apache.flink.types.Row;

/**
 * Static factories the Python side calls through py4j: sinks of {@link Row}s into PostgreSQL.
 *
 * <ul>
 *   <li>{@link #exactlyOnce}: this project's {@link ExactlyOnceRowSink} (Flink's Sink V2
 *       two-phase commit, XA towards PostgreSQL).
 *   <li>{@link #atLeastOnce}: flink-connector-jdbc's {@link JdbcSink#builder()} at-least-once
 *       sink (the negative control of the tests).
 *   <li>{@link #connectorExactlyOnce}: flink-connector-jdbc 4.0.0-2.0's XA sink, kept only so
 *       the crash tests can show it is not exactly-once on PostgreSQL: it commits the
 *       transaction it just prepared inside the checkpoint snapshot, loses the transaction
 *       reference of restored committables, never rolls back PostgreSQL's leftovers and refuses
 *       to downscale. Never use it for data.
 * </ul>
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
     * @param xidPrefix stable and unique per sink; its Xids start with its hash
     * @param holdBackWhilePending keep rows in memory while the previous transaction is
     *     prepared (upserts: its row locks would block them)
     * @param timeoutSec the XA transaction timeout in seconds, or 0 for the server's default
     */
    public static ExactlyOnceRowSink exactlyOnce(
            String url,
            String user,
            String password,
            String sql,
            String jdbcTypes,
            int batchSize,
            boolean rewriteBatchedInserts,
            String xidPrefix,
            boolean holdBackWhilePending,
            int timeoutSec) {
        return new ExactlyOnceRowSink(
                new PgXaDataSourceSupplier(url, user, password, rewriteBatchedInserts),
                sql,
                new RowStatementBuilder(jdbcTypes),
                batchSize,
                xidPrefix,
                holdBackWhilePending,
                timeoutSec);
    }

    /**
     * flink-connector-jdbc's XA sink (see the class comment: not exactly-once on PostgreSQL),
     * for the negative runs of the crash tests only.
     */
    public static JdbcSink<Row> connectorExactlyOnce(
            String url,
            String user,
            String password,
            String sql,
            String jdbcTypes,
            int batchSize,
            boolean rewriteBatchedInserts) {
        JdbcExecutionOptions execution =
                JdbcExecutionOptions.builder().withBatchSize(batchSize).withMaxRetries(0).build();
        JdbcExactlyOnceOptions exactlyOnce =
                JdbcExactlyOnceOptions.builder().withTransactionPerConnection(true).build();
        return JdbcSink.<Row>builder()
                .withQueryStatement(sql, new RowStatementBuilder(jdbcTypes))
                .withExecutionOptions(execution)
                .buildExactlyOnce(
                        exactlyOnce,
                        new PgXaDataSourceSupplier(url, user, password, rewriteBatchedInserts));
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
