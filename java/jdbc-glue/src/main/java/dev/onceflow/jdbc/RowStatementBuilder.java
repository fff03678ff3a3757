package dev.onceflow.jdbc;

import java.sql.JDBCType;
import java.sql.PreparedStatement;
import java.sql.SQLException;

import org.apache.flink.connector.jdbc.JdbcStatementBuilder;
import org.apache.flink.types.Row;

/**
 * Binds the fields of a Flink {@link Row} to the statement's parameters by position.
 *
 * <p>Field {@code i} goes to parameter {@code i + 1}; a null field is bound with
 * {@code setNull} and the declared JDBC type of its column (PostgreSQL needs a type for a
 * null parameter). The SQL text decides the rest (casts such as {@code ?::jsonb}).
 */
public final class RowStatementBuilder implements JdbcStatementBuilder<Row> {

    private static final long serialVersionUID = 1L;

    private final int[] sqlTypes;

    /**
     * @param jdbcTypes comma-separated {@link JDBCType} names, one per row field, e.g.
     *     {@code "VARCHAR,BIGINT,BOOLEAN"}
     */
    public RowStatementBuilder(String jdbcTypes) {
        String[] names = jdbcTypes.split(",");
        this.sqlTypes = new int[names.length];
        for (int i = 0; i < names.length; i++) {
            sqlTypes[i] = JDBCType.valueOf(names[i].trim()).getVendorTypeNumber();
        }
    }

    @Override
    public void accept(PreparedStatement statement, Row row) throws SQLException {
        if (row.getArity() != sqlTypes.length) {
            throw new SQLException(
                    "row has " + row.getArity() + " fields but the statement binds "
                            + sqlTypes.length + " parameters: " + row);
        }
        for (int i = 0; i < sqlTypes.length; i++) {
            Object value = row.getField(i);
            if (value == null) {
                statement.setNull(i + 1, sqlTypes[i]);
            } else {
                statement.setObject(i + 1, value, sqlTypes[i]);
            }
        }
    }
}
