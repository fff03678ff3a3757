package dev.onceflow.udf;

import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * Records with a key go on, records without one go to a side output, in one pass in the JVM.
 *
 * <p>Input: {@code Row(k, v, topic, partition, offset)}, {@code k} a record's dedup identity or
 * NULL. Main output: the rows with a key, unchanged; side output: {@code Row(v, topic,
 * partition, offset)} of the rows without (their dead letters are written by Python). Two SQL
 * queries over the same stream would convert and filter every record twice.
 */
public final class SplitUnkeyed extends ProcessFunction<Row, Row> {
    private static final long serialVersionUID = 1L;

    private final OutputTag<Row> unkeyed;

    public SplitUnkeyed(OutputTag<Row> unkeyed) {
        this.unkeyed = unkeyed;
    }

    @Override
    public void processElement(Row row, Context ctx, Collector<Row> out) {
        if (row.getField(0) != null) {
            out.collect(row);
        } else {
            ctx.output(unkeyed, Row.of(row.getField(1), row.getField(2), row.getField(3),
                    row.getField(4)));
        }
    }
}
