package dev.onceflow.jdbc;

import javax.sql.XADataSource;

import org.apache.flink.util.function.SerializableSupplier;
import org.postgresql.xa.PGXADataSource;

/**
 * Supplies PostgreSQL's {@link XADataSource} to {@link ExactlyOnceRowSink} (and to the
 * connector's XA sink, kept for comparisons).
 *
 * <p>The sink serializes its supplier into the job graph and calls it on every writer and
 * committer, so it holds only the URL and the credentials, never a connection. The password is
 * kept out of {@link #toString()} (Flink logs operator descriptions).
 */
public final class PgXaDataSourceSupplier implements SerializableSupplier<XADataSource> {

    private static final long serialVersionUID = 1L;

    private final String url;
    private final String user;
    private final String password;
    private final boolean rewriteBatchedInserts;

    /**
     * @param url a {@code jdbc:postgresql://host:port/db} URL
     * @param user the role, or null to take it from the URL
     * @param password the password, or null for none (trust/peer auth or in the URL)
     * @param rewriteBatchedInserts let the driver send a batch of INSERTs as multi-row
     *     INSERTs (only for statements whose rows never conflict with each other)
     */
    public PgXaDataSourceSupplier(
            String url, String user, String password, boolean rewriteBatchedInserts) {
        if (url == null || !url.startsWith("jdbc:postgresql:")) {
            throw new IllegalArgumentException(
                    "a PostgreSQL XA data source needs a jdbc:postgresql: URL");
        }
        this.url = url;
        this.user = user;
        this.password = password;
        this.rewriteBatchedInserts = rewriteBatchedInserts;
    }

    @Override
    public XADataSource get() {
        PGXADataSource source = new PGXADataSource();
        source.setUrl(url);
        source.setReWriteBatchedInserts(rewriteBatchedInserts);
        if (user != null && !user.isEmpty()) {
            source.setUser(user);
        }
        if (password != null && !password.isEmpty()) {
            source.setPassword(password);
        }
        return XaHold.wrap(source);
    }

    @Override
    public String toString() {
        return "PgXaDataSourceSupplier{url="
                + url
                + ", user="
                + user
                + ", password=***, rewriteBatchedInserts="
                + rewriteBatchedInserts
                + "}";
    }
}
