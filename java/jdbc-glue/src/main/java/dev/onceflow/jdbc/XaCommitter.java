package dev.onceflow.jdbc;

import java.util.Collection;

import javax.sql.XAConnection;
import javax.sql.XADataSource;
import javax.transaction.xa.XAException;
import javax.transaction.xa.XAResource;

import org.apache.flink.api.connector.sink2.Committer;
import org.apache.flink.util.FlinkRuntimeException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Commits the prepared transactions of {@link ExactlyOnceRowSink} by Xid ({@code COMMIT
 * PREPARED}) once their checkpoint completes, on a connection of its own.
 *
 * <p>Outcomes: committed, or unknown to the server ({@code XAER_NOTA}: committed before, e.g.
 * the same committable again after a restore; the writer never rolls back a transaction that a
 * restored checkpoint lists, so unknown means committed) or heuristically committed: done. The
 * connection or the server gone: retried later on a new connection (Flink bounds the retries).
 * Anything else, a heuristic rollback included (the rows are lost): the job fails with the
 * reason.
 */
final class XaCommitter implements Committer<PgXid> {

    private static final Logger LOG = LoggerFactory.getLogger(XaCommitter.class);

    private final XADataSource dataSource;
    private XAConnection connection;
    private XAResource xa;

    XaCommitter(XADataSource dataSource) {
        this.dataSource = dataSource;
    }

    @Override
    public void commit(Collection<CommitRequest<PgXid>> requests) {
        for (CommitRequest<PgXid> request : requests) {
            commitOne(request);
        }
    }

    private void commitOne(CommitRequest<PgXid> request) {
        PgXid xid = request.getCommittable();
        try {
            open().commit(xid, false);
            LOG.debug("committed {}", xid);
        } catch (XAException e) {
            if (XaErrors.unknownTransaction(e)) {
                LOG.info("{} is not prepared any more: committed before", xid);
                request.signalAlreadyCommitted();
            } else if (e.errorCode == XAException.XA_HEURCOM) {
                LOG.warn("{} was committed heuristically", xid);
                request.signalAlreadyCommitted();
            } else if (XaErrors.transientFailure(e)) {
                LOG.warn("could not commit {} now, retrying: {}", xid, XaErrors.describe(e));
                reset();
                request.retryLater();
            } else {
                reset();
                request.signalFailedWithUnknownReason(
                        new FlinkRuntimeException(
                                "could not commit the prepared transaction "
                                        + xid
                                        + " of a completed checkpoint: "
                                        + XaErrors.describe(e)
                                        + "; its rows stay invisible. Look it up in "
                                        + "pg_prepared_xacts (gid starting with "
                                        + PgXid.FORMAT_ID
                                        + "_) and COMMIT PREPARED it by hand",
                                e));
            }
        } catch (java.sql.SQLException e) {
            LOG.warn("could not connect to commit {}, retrying: {}", xid, XaErrors.describe(e));
            reset();
            request.retryLater();
        }
    }

    private XAResource open() throws java.sql.SQLException, XAException {
        if (xa == null) {
            connection = dataSource.getXAConnection();
            xa = connection.getXAResource();
        }
        return xa;
    }

    private void reset() {
        if (connection != null) {
            try {
                connection.close();
            } catch (java.sql.SQLException e) {
                LOG.debug("closing a broken connection", e);
            }
        }
        connection = null;
        xa = null;
    }

    @Override
    public void close() {
        reset();
    }
}
