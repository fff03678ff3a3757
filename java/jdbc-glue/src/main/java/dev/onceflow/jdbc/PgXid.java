package dev.onceflow.jdbc;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HexFormat;

import javax.transaction.xa.Xid;

/**
 * The Xid of one XA transaction of {@link ExactlyOnceRowSink}: which sink, which subtask, which
 * checkpoint interval.
 *
 * <p>The global transaction id is 28 bytes: the first 16 bytes of the SHA-256 of the sink's
 * stable prefix (its database, table and uid by default: never the job id, which changes on a
 * resume), the subtask index (4 bytes) and the transaction's <em>label</em> (8 bytes). The label
 * is the id of the last checkpoint the writer had snapshotted when it opened the transaction,
 * plus one: a lower bound of the checkpoint whose barrier prepares it. The branch qualifier is a
 * single byte. PostgreSQL's driver names the prepared transaction {@code
 * formatId_base64(gtrid)_base64(bqual)} ({@code pg_prepared_xacts.gid}).
 *
 * <p>It is also the committable the writer hands to the committer (serialised by {@link
 * PgXidSerializer}), so the committer commits by Xid alone, on any connection.
 */
public final class PgXid implements Xid {

    /** "ONCE": tells this sink's transactions apart from any other XA user's. */
    public static final int FORMAT_ID = 0x4f4e4345;

    static final int PREFIX_BYTES = 16;
    static final int GTRID_BYTES = PREFIX_BYTES + Integer.BYTES + Long.BYTES;
    private static final byte[] BQUAL = {1};

    private final byte[] gtrid;

    private PgXid(byte[] gtrid) {
        this.gtrid = gtrid;
    }

    /** The Xid of subtask {@code subtask}'s transaction labelled {@code label}. */
    public static PgXid of(byte[] prefixHash, int subtask, long label) {
        if (prefixHash.length != PREFIX_BYTES) {
            throw new IllegalArgumentException("the prefix hash must be " + PREFIX_BYTES + " bytes");
        }
        return new PgXid(
                ByteBuffer.allocate(GTRID_BYTES)
                        .put(prefixHash)
                        .putInt(subtask)
                        .putLong(label)
                        .array());
    }

    /** Rebuilds an Xid from its global transaction id (the committable's serialised form). */
    static PgXid fromGtrid(byte[] gtrid) {
        if (gtrid.length != GTRID_BYTES) {
            throw new IllegalArgumentException("not a onceflow Xid: " + gtrid.length + " bytes");
        }
        return new PgXid(gtrid.clone());
    }

    /** The 16-byte hash of a sink's stable prefix that every Xid of that sink starts with. */
    public static byte[] prefixHash(String prefix) {
        try {
            byte[] digest =
                    MessageDigest.getInstance("SHA-256")
                            .digest(prefix.getBytes(StandardCharsets.UTF_8));
            return Arrays.copyOf(digest, PREFIX_BYTES);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this JVM", e);
        }
    }

    /**
     * This sink's Xid for {@code xid} (for instance one that {@code XAResource.recover} returned
     * in the driver's own Xid class), or null when {@code xid} belongs to someone else.
     */
    public static PgXid ownOrNull(Xid xid, byte[] prefixHash) {
        byte[] global = xid.getGlobalTransactionId();
        if (xid.getFormatId() != FORMAT_ID
                || global == null
                || global.length != GTRID_BYTES
                || !Arrays.equals(xid.getBranchQualifier(), BQUAL)
                || !Arrays.equals(Arrays.copyOf(global, PREFIX_BYTES), prefixHash)) {
            return null;
        }
        return new PgXid(global.clone());
    }

    public int subtask() {
        return ByteBuffer.wrap(gtrid, PREFIX_BYTES, Integer.BYTES).getInt();
    }

    public long label() {
        return ByteBuffer.wrap(gtrid, PREFIX_BYTES + Integer.BYTES, Long.BYTES).getLong();
    }

    @Override
    public int getFormatId() {
        return FORMAT_ID;
    }

    @Override
    public byte[] getGlobalTransactionId() {
        return gtrid.clone();
    }

    @Override
    public byte[] getBranchQualifier() {
        return BQUAL.clone();
    }

    /** True when {@code other} names the same transaction (whatever its Xid class). */
    public boolean sameAs(Xid other) {
        return other.getFormatId() == FORMAT_ID
                && Arrays.equals(other.getGlobalTransactionId(), gtrid)
                && Arrays.equals(other.getBranchQualifier(), BQUAL);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof PgXid && Arrays.equals(((PgXid) o).gtrid, gtrid);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(gtrid);
    }

    @Override
    public String toString() {
        return "PgXid{subtask="
                + subtask()
                + ", label="
                + label()
                + ", prefix="
                + HexFormat.of().formatHex(gtrid, 0, 4)
                + "}";
    }
}
