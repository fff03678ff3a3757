package dev.onceflow.udf;

import java.nio.charset.StandardCharsets;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * The dedup identity of a raw JSON record value, read in one streaming pass over its bytes.
 *
 * <p>{@code eval(value, idPath, maxBytes, maxDepth)} returns {@code "s:<id>"} for a string id
 * and {@code "i:<digits>"} for an integer id: exactly the identity onceflow's Python path
 * derives ({@code onceflow.operators.dedup.identity.identity_of} after {@code
 * onceflow.operators.records.parse_object}). It returns NULL whenever Python might not accept
 * the record with that identity: not UTF-8, not strict JSON (NaN, a number overflowing a
 * double, an integer past Python's digit limit, comments, trailing bytes...), not an object,
 * nested deeper than {@code maxDepth}, larger than {@code maxBytes}, an id that is absent,
 * null, empty, of another type, or not Unicode text (a lone surrogate escape), or an integer
 * id longer than 1,000 digits. NULL never means "drop": the caller sends such a record to
 * Python, which names the dead-letter reason (or, when Python accepts what this scan
 * refused, calls it {@code ambiguous_key}). Member names repeated along the id path keep
 * the last value, as Python's {@code json} does.
 *
 * <p>The whole value is validated (a record with bad bytes after its id is not JSON), but
 * only the id and the member names along its path are decoded: nothing else is allocated.
 */
public final class JsonIdScanner extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    /** Integer ids longer than this have no key (the JVM's JSON functions' limit). */
    static final int MAX_ID_DIGITS = 1000;

    /** Python refuses integers over 4,300 digits; anything over 4,000 is left to Python. */
    static final int MAX_INT_DIGITS = 4000;

    private transient String lastPath;
    private transient String[] segments;

    public String eval(byte[] value, String idPath, Integer maxBytes, Integer maxDepth) {
        if (value == null || idPath == null || maxBytes == null || maxDepth == null) {
            return null;
        }
        if (value.length > maxBytes) {
            return null;
        }
        if (!idPath.equals(lastPath)) {
            segments = idPath.split("\\.", -1);
            lastPath = idPath;
        }
        try {
            return new Scan(value, segments, maxDepth).document();
        } catch (Invalid | StackOverflowError e) {
            return null;
        }
    }

    @Override
    public boolean isDeterministic() {
        return true;
    }

    /** The record is not a strict JSON object Python would read the same way. */
    static final class Invalid extends RuntimeException {
        private static final long serialVersionUID = 1L;
        static final Invalid INSTANCE = new Invalid();

        private Invalid() {
            super(null, null, false, false);
        }
    }

    static final class Scan {
        private final byte[] b;
        private final String[] path;
        private final int maxDepth;
        private int pos;

        Scan(byte[] b, String[] path, int maxDepth) {
            this.b = b;
            this.path = path;
            this.maxDepth = maxDepth;
        }

        String document() {
            skipWhitespace();
            if (pos >= b.length || b[pos] != '{') {
                throw Invalid.INSTANCE;
            }
            String id = object(1, 0);
            skipWhitespace();
            if (pos != b.length) {
                throw Invalid.INSTANCE;
            }
            return id;
        }

        /** A value at path level {@code level} (-1: off the path); its identity or null. */
        private String value(int depth, int level) {
            if (pos >= b.length) {
                throw Invalid.INSTANCE;
            }
            byte c = b[pos];
            boolean isId = level == path.length;
            switch (c) {
                case '{':
                    return object(depth + 1, level);
                case '[':
                    array(depth + 1);
                    return null;
                case '"':
                    if (!isId) {
                        string(null);
                        return null;
                    }
                    StringBuilder text = new StringBuilder();
                    string(text);
                    return text.length() == 0 || !isUnicode(text) ? null : "s:" + text;
                case 't':
                    literal("true");
                    return null;
                case 'f':
                    literal("false");
                    return null;
                case 'n':
                    literal("null");
                    return null;
                default:
                    if (c == '-' || (c >= '0' && c <= '9')) {
                        return number(isId);
                    }
                    throw Invalid.INSTANCE;
            }
        }

        /** An object; on the path (0 <= level < path.length) the last member it names wins. */
        private String object(int depth, int level) {
            if (depth > maxDepth) {
                throw Invalid.INSTANCE;
            }
            boolean onPath = level >= 0 && level < path.length;
            String found = null;
            pos++;
            skipWhitespace();
            if (pos < b.length && b[pos] == '}') {
                pos++;
                return null;
            }
            while (true) {
                if (pos >= b.length || b[pos] != '"') {
                    throw Invalid.INSTANCE;
                }
                boolean match = false;
                if (onPath) {
                    StringBuilder name = new StringBuilder();
                    string(name);
                    match = path[level].contentEquals(name);
                } else {
                    string(null);
                }
                skipWhitespace();
                if (pos >= b.length || b[pos] != ':') {
                    throw Invalid.INSTANCE;
                }
                pos++;
                skipWhitespace();
                String id = value(depth, match ? level + 1 : -1);
                if (match) {
                    found = id;
                }
                skipWhitespace();
                if (pos >= b.length) {
                    throw Invalid.INSTANCE;
                }
                if (b[pos] == ',') {
                    pos++;
                    skipWhitespace();
                } else if (b[pos] == '}') {
                    pos++;
                    return found;
                } else {
                    throw Invalid.INSTANCE;
                }
            }
        }

        private void array(int depth) {
            if (depth > maxDepth) {
                throw Invalid.INSTANCE;
            }
            pos++;
            skipWhitespace();
            if (pos < b.length && b[pos] == ']') {
                pos++;
                return;
            }
            while (true) {
                value(depth, -1);
                skipWhitespace();
                if (pos >= b.length) {
                    throw Invalid.INSTANCE;
                }
                if (b[pos] == ',') {
                    pos++;
                    skipWhitespace();
                } else if (b[pos] == ']') {
                    pos++;
                    return;
                } else {
                    throw Invalid.INSTANCE;
                }
            }
        }

        /** A string (strict: no raw control characters, valid UTF-8); decoded into {@code out}. */
        private void string(StringBuilder out) {
            pos++;
            while (true) {
                if (pos >= b.length) {
                    throw Invalid.INSTANCE;
                }
                int c = b[pos] & 0xff;
                if (c == '"') {
                    pos++;
                    return;
                }
                if (c == '\\') {
                    escape(out);
                } else if (c < 0x20) {
                    throw Invalid.INSTANCE;
                } else if (c < 0x80) {
                    if (out != null) {
                        out.append((char) c);
                    }
                    pos++;
                } else {
                    utf8(c, out);
                }
            }
        }

        private void escape(StringBuilder out) {
            if (pos + 1 >= b.length) {
                throw Invalid.INSTANCE;
            }
            byte e = b[pos + 1];
            char ch;
            switch (e) {
                case '"': ch = '"'; break;
                case '\\': ch = '\\'; break;
                case '/': ch = '/'; break;
                case 'b': ch = '\b'; break;
                case 'f': ch = '\f'; break;
                case 'n': ch = '\n'; break;
                case 'r': ch = '\r'; break;
                case 't': ch = '\t'; break;
                case 'u':
                    if (pos + 6 > b.length) {
                        throw Invalid.INSTANCE;
                    }
                    int code = 0;
                    for (int i = pos + 2; i < pos + 6; i++) {
                        code = code * 16 + hex(b[i]);
                    }
                    ch = (char) code;
                    if (out != null) {
                        out.append(ch);
                    }
                    pos += 6;
                    return;
                default:
                    throw Invalid.INSTANCE;
            }
            if (out != null) {
                out.append(ch);
            }
            pos += 2;
        }

        private static int hex(byte h) {
            if (h >= '0' && h <= '9') {
                return h - '0';
            }
            if (h >= 'a' && h <= 'f') {
                return h - 'a' + 10;
            }
            if (h >= 'A' && h <= 'F') {
                return h - 'A' + 10;
            }
            throw Invalid.INSTANCE;
        }

        /** One well-formed UTF-8 sequence (Unicode table 3-7, as Python's strict decoder). */
        private void utf8(int lead, StringBuilder out) {
            int n;
            int lo = 0x80;
            int hi = 0xbf;
            int cp;
            if (lead >= 0xc2 && lead <= 0xdf) {
                n = 1;
                cp = lead & 0x1f;
            } else if (lead >= 0xe0 && lead <= 0xef) {
                n = 2;
                cp = lead & 0x0f;
                if (lead == 0xe0) {
                    lo = 0xa0;
                } else if (lead == 0xed) {
                    hi = 0x9f;
                }
            } else if (lead >= 0xf0 && lead <= 0xf4) {
                n = 3;
                cp = lead & 0x07;
                if (lead == 0xf0) {
                    lo = 0x90;
                } else if (lead == 0xf4) {
                    hi = 0x8f;
                }
            } else {
                throw Invalid.INSTANCE;
            }
            if (pos + n >= b.length) {
                throw Invalid.INSTANCE;
            }
            for (int i = 1; i <= n; i++) {
                int c = b[pos + i] & 0xff;
                if (c < (i == 1 ? lo : 0x80) || c > (i == 1 ? hi : 0xbf)) {
                    throw Invalid.INSTANCE;
                }
                cp = (cp << 6) | (c & 0x3f);
            }
            if (out != null) {
                out.appendCodePoint(cp);
            }
            pos += n + 1;
        }

        private void literal(String word) {
            int n = word.length();
            if (pos + n > b.length) {
                throw Invalid.INSTANCE;
            }
            for (int i = 0; i < n; i++) {
                if (b[pos + i] != word.charAt(i)) {
                    throw Invalid.INSTANCE;
                }
            }
            pos += n;
        }

        /** A strict JSON number; the identity of an integer id, else null. */
        private String number(boolean isId) {
            int start = pos;
            boolean negative = b[pos] == '-';
            if (negative) {
                pos++;
            }
            int digitsStart = pos;
            if (pos >= b.length || !isDigit(b[pos])) {
                throw Invalid.INSTANCE;
            }
            if (b[pos] == '0') {
                pos++;
            } else {
                while (pos < b.length && isDigit(b[pos])) {
                    pos++;
                }
            }
            int intDigits = pos - digitsStart;
            boolean fraction = false;
            boolean exponent = false;
            if (pos < b.length && b[pos] == '.') {
                fraction = true;
                pos++;
                requireDigits();
            }
            if (pos < b.length && (b[pos] == 'e' || b[pos] == 'E')) {
                exponent = true;
                pos++;
                if (pos < b.length && (b[pos] == '+' || b[pos] == '-')) {
                    pos++;
                }
                requireDigits();
            }
            if (fraction || exponent) {
                // Python's float() rounds as Java's parseDouble does: both overflow alike.
                if (exponent || intDigits > 300) {
                    String text = new String(b, start, pos - start, StandardCharsets.US_ASCII);
                    if (Double.isInfinite(Double.parseDouble(text))) {
                        throw Invalid.INSTANCE;
                    }
                }
                return null; // a float id is wrong_type
            }
            if (intDigits > MAX_INT_DIGITS) {
                throw Invalid.INSTANCE;
            }
            if (!isId || intDigits > MAX_ID_DIGITS) {
                return null;
            }
            if (negative && intDigits == 1 && b[digitsStart] == '0') {
                return "i:0"; // Python's int("-0") is 0
            }
            return "i:" + new String(b, start, pos - start, StandardCharsets.US_ASCII);
        }

        private void requireDigits() {
            if (pos >= b.length || !isDigit(b[pos])) {
                throw Invalid.INSTANCE;
            }
            while (pos < b.length && isDigit(b[pos])) {
                pos++;
            }
        }

        private static boolean isDigit(byte c) {
            return c >= '0' && c <= '9';
        }

        private void skipWhitespace() {
            while (pos < b.length) {
                byte c = b[pos];
                if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                    pos++;
                } else {
                    return;
                }
            }
        }

        /** No lone surrogate: only such text is a Kafka key, a Python str, a state key. */
        private static boolean isUnicode(CharSequence s) {
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                if (Character.isHighSurrogate(c)) {
                    if (i + 1 >= s.length() || !Character.isLowSurrogate(s.charAt(i + 1))) {
                        return false;
                    }
                    i++;
                } else if (Character.isLowSurrogate(c)) {
                    return false;
                }
            }
            return true;
        }
    }
}
