package dev.onceflow.jdbc;

import java.sql.SQLException;

import javax.transaction.xa.XAException;

/** Reading PostgreSQL's XA and SQL errors: what kind, and a message that says it. */
final class XaErrors {

    /** {@code 42704} undefined_object: "prepared transaction with identifier ... does not exist". */
    private static final String UNDEFINED_OBJECT = "42704";

    private XaErrors() {}

    /** The transaction is unknown to the server: committed (or rolled back) before. */
    static boolean unknownTransaction(XAException e) {
        return e.errorCode == XAException.XAER_NOTA
                || UNDEFINED_OBJECT.equals(sqlState(e));
    }

    /** The connection or the server went away: a later attempt on a new connection may work. */
    static boolean transientFailure(XAException e) {
        String state = sqlState(e);
        return e.errorCode == XAException.XAER_RMFAIL
                || e.errorCode == XAException.XA_RETRY
                || (state != null && (state.startsWith("08") || state.startsWith("57P")));
    }

    static String sqlState(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof SQLException && ((SQLException) t).getSQLState() != null) {
                return ((SQLException) t).getSQLState();
            }
        }
        return null;
    }

    static String describe(Exception e) {
        StringBuilder out = new StringBuilder(String.valueOf(e.getMessage()));
        if (e instanceof XAException) {
            out.append(" (XA error code ").append(((XAException) e).errorCode).append(')');
        }
        String state = sqlState(e);
        if (state != null) {
            out.append(" (SQLState ").append(state).append(')');
        }
        if (e.getCause() != null && e.getCause() != e) {
            out.append(": ").append(e.getCause().getMessage());
        }
        return out.toString();
    }
}
