package dev.onceflow.jdbc;

import java.io.File;
import java.io.IOException;
import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;

import javax.sql.XAConnection;
import javax.sql.XADataSource;
import javax.transaction.xa.XAResource;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A test hook, outside the sinks' constructors: freeze the process at one XA step, once, so a
 * test can kill it exactly there.
 *
 * <p>Armed by the environment variable {@code ONCEFLOW_XA_HOLD=<step>@<marker file>}, where step
 * is {@code after-prepare}, {@code before-commit} or {@code after-commit}. Once the test has
 * created {@code <marker file>.arm}, the first time the step is reached (the marker does not
 * exist yet) the calling thread creates the marker and sleeps until the process is killed. It wraps the {@link XADataSource}, so it holds the same way
 * under this project's sink and under flink-connector-jdbc's XA sink (for the negative runs).
 * Unset, {@link #wrap} returns the data source unchanged.
 */
final class XaHold {

    private static final Logger LOG = LoggerFactory.getLogger(XaHold.class);
    static final String VARIABLE = "ONCEFLOW_XA_HOLD";

    private XaHold() {}

    static XADataSource wrap(XADataSource source) {
        String spec = System.getenv(VARIABLE);
        if (spec == null || spec.isEmpty() || !spec.contains("@")) {
            return source;
        }
        String step = spec.substring(0, spec.indexOf('@'));
        File marker = new File(spec.substring(spec.indexOf('@') + 1));
        LOG.warn("test hook armed: the first XA {} holds the process ({})", step, marker);
        return proxy(XADataSource.class, source, (result, method) ->
                method.equals("getXAConnection")
                        ? proxy(XAConnection.class, result, (inner, m) ->
                                m.equals("getXAResource")
                                        ? holding((XAResource) inner, step, marker)
                                        : inner)
                        : result);
    }

    private interface After {
        Object apply(Object result, String method) throws Exception;
    }

    private static <T> T proxy(Class<T> type, Object target, After after) {
        InvocationHandler handler =
                (self, method, args) -> {
                    try {
                        return after.apply(method.invoke(target, args), method.getName());
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                };
        return type.cast(
                Proxy.newProxyInstance(XaHold.class.getClassLoader(), new Class<?>[] {type}, handler));
    }

    private static XAResource holding(XAResource target, String step, File marker) {
        InvocationHandler handler =
                (self, method, args) -> {
                    String name = method.getName();
                    if (step.equals("before-" + name)) {
                        hold(step, marker);
                    }
                    Object result;
                    try {
                        result = method.invoke(target, args);
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                    if (step.equals("after-" + name)) {
                        hold(step, marker);
                    }
                    return result;
                };
        return (XAResource)
                Proxy.newProxyInstance(
                        XaHold.class.getClassLoader(), new Class<?>[] {XAResource.class}, handler);
    }

    private static void hold(String step, File marker) throws InterruptedException {
        try {
            if (!new File(marker.getPath() + ".arm").exists() || !marker.createNewFile()) {
                return; // held once already
            }
        } catch (IOException e) {
            LOG.warn("cannot create the hold marker {}", marker, e);
            return;
        }
        LOG.warn("test hook: holding at {} until the process is killed", step);
        Thread.sleep(Long.MAX_VALUE);
    }
}
