package dev.onceflow.udf;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * A test hook (recovery tests, the verifier): fails the task once when an armed id arrives.
 *
 * <p>{@code eval(id, armed, markerDir)} is TRUE, except the first time an id listed in {@code
 * armed} (ids separated by newlines) arrives: then it writes {@code <markerDir>/<stem>.fired}
 * and throws, so Flink restarts from the last completed checkpoint and the replay passes. The
 * marker survives restarts; its name is the id in file-name-safe characters, as {@code
 * onceflow.operators.faults.marker_stem} names it. Only in a query when faults are armed.
 */
public final class FailOnce extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    private transient String lastArmed;
    private transient Set<String> ids;

    public Boolean eval(String id, String armed, String markerDir) {
        if (id == null || armed == null || markerDir == null) {
            return Boolean.TRUE;
        }
        if (!armed.equals(lastArmed)) {
            ids = new HashSet<>(Arrays.asList(armed.split("\n", -1)));
            lastArmed = armed;
        }
        if (!ids.contains(id)) {
            return Boolean.TRUE;
        }
        String stem = id.replaceAll("[^A-Za-z0-9._@-]", "_");
        if (stem.length() > 200) {
            stem = stem.substring(0, 200);
        }
        Path marker = Paths.get(markerDir, stem + ".fired");
        if (Files.exists(marker)) {
            return Boolean.TRUE;
        }
        try {
            Files.createDirectories(marker.getParent());
            String now = (System.currentTimeMillis() / 1000.0) + "\n";
            Files.write(marker, now.getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        throw new IllegalStateException("injected failure at '" + id + "'");
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }
}
