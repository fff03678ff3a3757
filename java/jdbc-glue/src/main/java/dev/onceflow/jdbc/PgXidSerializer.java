package dev.onceflow.jdbc;

import java.io.IOException;

import org.apache.flink.core.io.SimpleVersionedSerializer;

/** Serialises {@link PgXid} committables into checkpoints: version 1 is the 28-byte gtrid. */
public final class PgXidSerializer implements SimpleVersionedSerializer<PgXid> {

    @Override
    public int getVersion() {
        return 1;
    }

    @Override
    public byte[] serialize(PgXid xid) {
        return xid.getGlobalTransactionId();
    }

    @Override
    public PgXid deserialize(int version, byte[] serialized) throws IOException {
        if (version != 1) {
            throw new IOException("unknown PgXid serialisation version " + version);
        }
        try {
            return PgXid.fromGtrid(serialized);
        } catch (IllegalArgumentException e) {
            throw new IOException(e.getMessage(), e);
        }
    }
}
