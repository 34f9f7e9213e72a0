/* The loops every entry of every log passes through, in C: events.chain's
 * check_links (verification) and seal_chain (every append), and events.codec's framer.
 *
 * In Python each costs a few microseconds an entry, most of it the interpreter around
 * a little real work: for the chain, two OpenSSL calls per link (a fresh hash object,
 * its algorithm looked up again, the digest turned into hex) rather than hashing a
 * few hundred bytes; for the framer, a dict built to be serialised. Here one SHA-256
 * serves every link (SHA256_*, or EVP with the algorithm fetched once), seals are
 * compared and written where they lie, and the framer writes the JSON directly.
 *
 * Each function has a Python original that stays the reference and the fallback
 * (events/chain.py loads this module only when it was built from this very file, and
 * tests/test_speedups.py holds each to its reference). check_links(previous,
 * payloads) is the stored hash of the last payload when each payload is sealed
 * (`,"hash":"<64 hex>"}` at its end) and that hash is sha256(previous hash || payload
 * without its seal || "}"), the first linked to `previous`; None when one is not;
 * `previous` itself for no payloads. A payload that is not a bytes-like object raises
 * TypeError, as in Python. seal_chain and frame are described where they are defined.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define HEX_LEN 64
/* ,"hash":"<64 hex>"} */
static const char PREFIX[] = ",\"hash\":\"";
#define PREFIX_LEN 9
#define SUFFIX_LEN (PREFIX_LEN + HEX_LEN + 2)

static const char HEX[] = "0123456789abcdef";

/* The decimal digits of `value` at `out` (at least 20 bytes); their number. What "%lld"
 * writes, without printf's machinery (which took ~20% of a framed event). */
static int
decimal(char *out, long long value)
{
    unsigned long long magnitude = value < 0 ? 0ULL - (unsigned long long)value
                                             : (unsigned long long)value;
    char reversed[20];
    int n = 0;
    do {
        reversed[n++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    int width = 0;
    if (value < 0) {
        out[width++] = '-';
    }
    while (n) {
        out[width++] = reversed[--n];
    }
    return width;
}

static void
to_hex(const unsigned char *digest, char *out)
{
    for (int i = 0; i < 32; i++) {
        out[2 * i] = HEX[digest[i] >> 4];
        out[2 * i + 1] = HEX[digest[i] & 15];
    }
}

#if defined(OPENSSL_NO_DEPRECATED_3_0)
/* OpenSSL without its SHA256_* functions: EVP, with the algorithm fetched once. */
static EVP_MD *sha256_md = NULL;
typedef EVP_MD_CTX *Hasher;

static int setup(void) {
    return (sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL)) != NULL;
}
static Hasher hasher_new(void) { return EVP_MD_CTX_new(); }
static void hasher_free(Hasher h) { EVP_MD_CTX_free(h); }

/* One link: hex(sha256(previous || body || close)) into out, where close is "}" or
 * nothing (`closed`: the body already ends the JSON); 0 on an OpenSSL failure. */
static int
link_hex(Hasher ctx, const char *previous, Py_ssize_t previous_len,
         const char *body, Py_ssize_t body_len, int closed, char *out)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (!EVP_DigestInit_ex2(ctx, sha256_md, NULL)
        || !EVP_DigestUpdate(ctx, previous, (size_t)previous_len)
        || !EVP_DigestUpdate(ctx, body, (size_t)body_len)
        || !EVP_DigestUpdate(ctx, "}", closed ? 0 : 1)
        || !EVP_DigestFinal_ex(ctx, digest, &size)
        || size != 32) {
        return 0;
    }
    to_hex(digest, out);
    return 1;
}
#else
/* SHA256_* go straight to the block function (SHA-NI where the CPU has it), without
 * EVP's provider dispatch: 0.68 against 0.86 us a link measured here. Deprecated in
 * OpenSSL 3.0, not removed; a build without them takes the EVP branch above (compiled
 * by hand with -DOPENSSL_NO_DEPRECATED_3_0, not by the suite). */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
typedef int Hasher;

static int setup(void) { return 1; }
static Hasher hasher_new(void) { return 1; }
static void hasher_free(Hasher h) { (void)h; }

static int
link_hex(Hasher unused, const char *previous, Py_ssize_t previous_len,
         const char *body, Py_ssize_t body_len, int closed, char *out)
{
    (void)unused;
    SHA256_CTX ctx;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    if (!SHA256_Init(&ctx)
        || !SHA256_Update(&ctx, previous, (size_t)previous_len)
        || !SHA256_Update(&ctx, body, (size_t)body_len)
        || !SHA256_Update(&ctx, "}", closed ? 0 : 1)
        || !SHA256_Final(digest, &ctx)) {
        return 0;
    }
    to_hex(digest, out);
    return 1;
}
#endif

static PyObject *
check_links(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "check_links(previous, payloads) takes 2 arguments");
        return NULL;
    }
    Py_buffer previous_view;
    if (PyObject_GetBuffer(args[0], &previous_view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *items = PySequence_Fast(args[1], "payloads must be a sequence");
    if (items == NULL) {
        PyBuffer_Release(&previous_view);
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    PyObject **payloads = PySequence_Fast_ITEMS(items);
    PyObject *result = NULL;
    if (count == 0) {
        result = PyBytes_FromStringAndSize(previous_view.buf, previous_view.len);
        goto done;
    }
    /* Every payload is viewed first (a non-buffer raises before any hashing), so the
     * loop itself can run without the GIL: other threads of a verifier go on. */
    Py_buffer *views = PyMem_Calloc((size_t)count, sizeof(Py_buffer));
    if (views == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t viewed = 0;
    for (; viewed < count; viewed++) {
        if (PyObject_GetBuffer(payloads[viewed], &views[viewed], PyBUF_SIMPLE) < 0) {
            goto release;
        }
    }
    Hasher ctx = hasher_new();
    if (!ctx) {
        PyErr_NoMemory();
        goto release;
    }
    char computed[HEX_LEN];
    const char *previous = previous_view.buf;
    Py_ssize_t previous_len = previous_view.len;
    int whole = 1, failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        const char *payload = views[i].buf;
        Py_ssize_t length = views[i].len;
        if (length <= SUFFIX_LEN) {
            whole = 0;
            break;
        }
        const char *seal = payload + length - SUFFIX_LEN;
        if (!link_hex(ctx, previous, previous_len, payload, length - SUFFIX_LEN, 0, computed)) {
            failed = 1;
            break;
        }
        if (memcmp(seal, PREFIX, PREFIX_LEN) != 0
            || memcmp(seal + PREFIX_LEN, computed, HEX_LEN) != 0
            || seal[PREFIX_LEN + HEX_LEN] != '"' || seal[PREFIX_LEN + HEX_LEN + 1] != '}') {
            whole = 0;
            break;
        }
        /* The stored hash equals the computed one: link the next entry to it. */
        previous = seal + PREFIX_LEN;
        previous_len = HEX_LEN;
    }
    Py_END_ALLOW_THREADS
    hasher_free(ctx);
    if (failed) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL SHA-256 failed");
    } else if (!whole) {
        result = Py_NewRef(Py_None);
    } else {
        result = PyBytes_FromStringAndSize(previous, previous_len);
    }
release:
    for (Py_ssize_t i = 0; i < viewed; i++) {
        PyBuffer_Release(&views[i]);
    }
    PyMem_Free(views);
done:
    Py_DECREF(items);
    PyBuffer_Release(&previous_view);
    return result;
}

/* seal_chain(pending, position, previous): number, hash-chain and seal `pending`,
 * (type name, head, tail) triples whose canonical body at position p is
 * head || decimal(p) || tail, for positions position + 1, position + 2, ...: the stored
 * payloads (body without its closing brace || ,"hash":"<hex>"}) and the last hash.
 * events.chain.link and seal per entry, as the log writers inline them in Python.
 *
 * The payloads are allocated with the GIL and then filled and hashed without it: a
 * writer thread seals its batch while the engine's thread computes the next one. */
static PyObject *
seal_chain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "seal_chain(pending, position, previous) takes 3 arguments");
        return NULL;
    }
    long long position = PyLong_AsLongLong(args[1]);
    if (position == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "previous must be bytes");
        return NULL;
    }
    /* A list of our own: the hashing below runs without the GIL on pointers into the
     * entries' bytes, which this list keeps alive whatever the caller's list does. */
    PyObject *items = PySequence_List(args[0]);
    if (items == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(items);
    PyObject **entries = ((PyListObject *)items)->ob_item;
    PyObject *result = NULL;
    if (position > LLONG_MAX - count - 1) {
        PyErr_SetString(PyExc_OverflowError, "positions beyond a signed 64-bit integer");
        Py_DECREF(items);
        return NULL;
    }
    PyObject *payloads = PyList_New(count);
    const char **heads = PyMem_Calloc((size_t)count + 1, sizeof(char *));
    const char **tails = PyMem_Calloc((size_t)count + 1, sizeof(char *));
    Py_ssize_t *head_lens = PyMem_Calloc((size_t)count + 1, sizeof(Py_ssize_t));
    Py_ssize_t *tail_lens = PyMem_Calloc((size_t)count + 1, sizeof(Py_ssize_t));
    if (payloads == NULL || !heads || !tails || !head_lens || !tail_lens) {
        if (payloads != NULL) PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *entry = entries[i];
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3
            || !PyBytes_Check(PyTuple_GET_ITEM(entry, 1))
            || !PyBytes_Check(PyTuple_GET_ITEM(entry, 2))) {
            PyErr_SetString(PyExc_TypeError, "pending entries must be (name, head bytes, tail bytes)");
            goto done;
        }
        PyObject *head = PyTuple_GET_ITEM(entry, 1), *tail = PyTuple_GET_ITEM(entry, 2);
        heads[i] = PyBytes_AS_STRING(head);
        head_lens[i] = PyBytes_GET_SIZE(head);
        tails[i] = PyBytes_AS_STRING(tail);
        tail_lens[i] = PyBytes_GET_SIZE(tail);
        char digits[24];
        int width = decimal(digits, position + 1 + i);
        PyObject *payload = PyBytes_FromStringAndSize(
            NULL, head_lens[i] + width + tail_lens[i] - 1 + SUFFIX_LEN);
        if (payload == NULL) {
            goto done;
        }
        PyList_SET_ITEM(payloads, i, payload);
    }
    /* The chain starts from `previous`, kept alive by the caller's reference. */
    const char *previous = PyBytes_AS_STRING(args[2]);
    Py_ssize_t previous_len = PyBytes_GET_SIZE(args[2]);
    char last[HEX_LEN];
    int failed = 0;
    Hasher ctx = hasher_new();
    if (!ctx) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        char *out = PyBytes_AS_STRING(PyList_GET_ITEM(payloads, i));
        char digits[24];
        int width = decimal(digits, position + 1 + i);
        /* The body, in place: head || digits || tail, whose last byte (the brace) the
         * seal then overwrites, as body[:-1] drops it in Python. */
        memcpy(out, heads[i], (size_t)head_lens[i]);
        memcpy(out + head_lens[i], digits, (size_t)width);
        memcpy(out + head_lens[i] + width, tails[i], (size_t)tail_lens[i]);
        Py_ssize_t body_len = head_lens[i] + width + tail_lens[i];
        char *seal = out + body_len - 1;
        /* hashed whole, before its last byte (the brace) gives way to the seal */
        if (!link_hex(ctx, previous, previous_len, out, body_len, 1, seal + PREFIX_LEN)) {
            failed = 1;
            break;
        }
        memcpy(seal, PREFIX, PREFIX_LEN);
        seal[PREFIX_LEN + HEX_LEN] = '"';
        seal[PREFIX_LEN + HEX_LEN + 1] = '}';
        previous = seal + PREFIX_LEN;
        previous_len = HEX_LEN;
    }
    if (!failed && count) {
        memcpy(last, previous, HEX_LEN);
    }
    Py_END_ALLOW_THREADS
    hasher_free(ctx);
    if (failed) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL SHA-256 failed");
        goto done;
    }
    PyObject *head_hash = count ? PyBytes_FromStringAndSize(last, HEX_LEN) : Py_NewRef(args[2]);
    if (head_hash != NULL) {
        result = PyTuple_Pack(2, payloads, head_hash);
        Py_DECREF(head_hash);
    }
done:
    PyMem_Free(heads);
    PyMem_Free(tails);
    PyMem_Free(head_lens);
    PyMem_Free(tail_lens);
    Py_XDECREF(payloads);
    Py_DECREF(items);
    return result;
}

/* ------------------------------------------------------------------ framing
 *
 * frame(spec, event, time, cause): events.codec's framer for one class, in C. The
 * canonical data of an event is the JSON object of its fields, keys sorted, as
 * orjson writes it: ints as decimals, bools, null, strings UTF-8 with '"', '\' and the
 * control characters escaped (\b \t \n \f \r, else \u00xx), integer-only (nested)
 * tuples as arrays, no spaces. The Python framer (generated per class in
 * events/codec.py) stays the reference and the way out: for any value this does not
 * write exactly so (an int beyond 64 bits, a float, a string with a lone surrogate,
 * a subclass of int, any other type) it calls that framer and returns its answer, so
 * it never has an opinion of its own about an odd value.
 *
 * spec = (names, keys, kinds, tail, pending_class, type_name, python_framer):
 * attribute names (sorted), their '"name":' bytes, a bytes of kinds per field
 * (0 scalar, 1 integer tuple), the envelope's end after the time (',"type":..,"v":..}'),
 * events.codec.Pending, the stored type name, and the Python framer. */

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    char inline_buf[1024];
} Buf;

static int
buf_reserve(Buf *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap) {
        return 1;
    }
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + more) {
        cap *= 2;
    }
    char *data;
    if (b->data == b->inline_buf) {
        data = PyMem_Malloc((size_t)cap);
        if (data != NULL) {
            memcpy(data, b->data, (size_t)b->len);
        }
    } else {
        data = PyMem_Realloc(b->data, (size_t)cap);
    }
    if (data == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    b->data = data;
    b->cap = cap;
    return 1;
}

static int
buf_put(Buf *b, const char *bytes, Py_ssize_t n)
{
    if (!buf_reserve(b, n)) {
        return 0;
    }
    memcpy(b->data + b->len, bytes, (size_t)n);
    b->len += n;
    return 1;
}

/* 1 written, 0 error (exception set), -1 not this encoder's to write (fall back). */
static int
put_int(Buf *b, PyObject *value)
{
    int overflow = 0;
    long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow) {
        return -1;
    }
    if (number == -1 && PyErr_Occurred()) {
        return 0;
    }
    char digits[24];
    return buf_put(b, digits, decimal(digits, number));
}

static int
put_str(Buf *b, PyObject *value)
{
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(value, &size);
    if (text == NULL) {  /* a lone surrogate: orjson refuses it, so does the reference */
        PyErr_Clear();
        return -1;
    }
    if (!buf_reserve(b, size * 6 + 2)) {
        return 0;
    }
    char *out = b->data + b->len;
    *out++ = '"';
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *out++ = (char)c;
            continue;
        }
        *out++ = '\\';
        switch (c) {
        case '"': *out++ = '"'; break;
        case '\\': *out++ = '\\'; break;
        case '\b': *out++ = 'b'; break;
        case '\t': *out++ = 't'; break;
        case '\n': *out++ = 'n'; break;
        case '\f': *out++ = 'f'; break;
        case '\r': *out++ = 'r'; break;
        default:
            *out++ = 'u';
            *out++ = '0';
            *out++ = '0';
            *out++ = HEX[c >> 4];
            *out++ = HEX[c & 15];
        }
    }
    *out++ = '"';
    b->len = out - b->data;
    return 1;
}

static int
put_int_tree(Buf *b, PyObject *value, int depth)
{
    if (PyLong_CheckExact(value)) {
        return put_int(b, value);
    }
    if (depth > 32 || !(PyTuple_CheckExact(value) || PyList_CheckExact(value))) {
        return -1;
    }
    PyObject *items = value;  /* a tuple or list: read in place, the GIL held */
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    if (!buf_put(b, "[", 1)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i && !buf_put(b, ",", 1)) {
            return 0;
        }
        int done = put_int_tree(b, PySequence_Fast_GET_ITEM(items, i), depth + 1);
        if (done != 1) {
            return done;
        }
    }
    return buf_put(b, "]", 1);
}

static int
put_value(Buf *b, PyObject *value, char kind)
{
    if (kind == 1) {
        return put_int_tree(b, value, 0);
    }
    if (PyUnicode_CheckExact(value)) {
        return put_str(b, value);
    }
    if (PyLong_CheckExact(value)) {
        return put_int(b, value);
    }
    if (value == Py_True) {
        return buf_put(b, "true", 4);
    }
    if (value == Py_False) {
        return buf_put(b, "false", 5);
    }
    if (value == Py_None) {
        return buf_put(b, "null", 4);
    }
    return -1;
}

static PyObject *
frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4 || !PyTuple_CheckExact(args[0]) || PyTuple_GET_SIZE(args[0]) != 7
        || !PyTuple_CheckExact(PyTuple_GET_ITEM(args[0], 0))
        || !PyTuple_CheckExact(PyTuple_GET_ITEM(args[0], 1))
        || !PyBytes_CheckExact(PyTuple_GET_ITEM(args[0], 2))
        || !PyBytes_CheckExact(PyTuple_GET_ITEM(args[0], 3))
        || !PyType_Check(PyTuple_GET_ITEM(args[0], 4))
        || !PyType_IsSubtype((PyTypeObject *)PyTuple_GET_ITEM(args[0], 4), &PyTuple_Type)
        || PyTuple_GET_SIZE(PyTuple_GET_ITEM(args[0], 0)) != PyTuple_GET_SIZE(PyTuple_GET_ITEM(args[0], 1))
        || PyTuple_GET_SIZE(PyTuple_GET_ITEM(args[0], 0)) != PyBytes_GET_SIZE(PyTuple_GET_ITEM(args[0], 2))) {
        PyErr_SetString(PyExc_TypeError, "frame(spec, event, time, cause): spec is "
                        "(names, keys, kinds, tail, pending class, type name, framer)");
        return NULL;
    }
    PyObject *spec = args[0], *event = args[1], *time = args[2], *cause = args[3];
    PyObject *names = PyTuple_GET_ITEM(spec, 0), *keys = PyTuple_GET_ITEM(spec, 1);
    PyObject *kinds = PyTuple_GET_ITEM(spec, 2), *tail_end = PyTuple_GET_ITEM(spec, 3);
    PyObject *pending = PyTuple_GET_ITEM(spec, 4), *type_name = PyTuple_GET_ITEM(spec, 5);
    PyObject *python = PyTuple_GET_ITEM(spec, 6);
    Py_ssize_t fields = PyTuple_GET_SIZE(names);

    long long when = 0, because = 0;
    int overflow = 0;
    int fallback = !PyLong_CheckExact(time) || (cause != Py_None && !PyLong_CheckExact(cause));
    if (!fallback) {
        when = PyLong_AsLongLongAndOverflow(time, &overflow);
        fallback = overflow || (when == -1 && PyErr_Occurred());
    }
    if (!fallback && cause != Py_None) {
        because = PyLong_AsLongLongAndOverflow(cause, &overflow);
        fallback = overflow || (because == -1 && PyErr_Occurred());
    }
    if (fallback) {
        PyErr_Clear();
        return PyObject_Vectorcall(python, args + 1, 3, NULL);
    }

    Buf b = {b.inline_buf, 0, sizeof b.inline_buf, {0}};
    PyObject *result = NULL;
    static const char CAUSE[] = "{\"cause\":", DATA[] = "{\"data\":{", AND_DATA[] = ",\"data\":{";
    char opening[64];
    int width = 0;
    if (cause == Py_None) {
        memcpy(opening, DATA, sizeof DATA - 1);
        width = (int)sizeof DATA - 1;
    } else {
        memcpy(opening, CAUSE, sizeof CAUSE - 1);
        width = (int)sizeof CAUSE - 1;
        width += decimal(opening + width, because);
        memcpy(opening + width, AND_DATA, sizeof AND_DATA - 1);
        width += (int)sizeof AND_DATA - 1;
    }
    if (!buf_put(&b, opening, width)) {
        goto done;
    }
    const char *kind = PyBytes_AS_STRING(kinds);
    for (Py_ssize_t i = 0; i < fields; i++) {
        PyObject *key = PyTuple_GET_ITEM(keys, i);
        if ((i && !buf_put(&b, ",", 1))
            || !buf_put(&b, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))) {
            goto done;
        }
        PyObject *value = PyObject_GetAttr(event, PyTuple_GET_ITEM(names, i));
        if (value == NULL) {
            goto done;
        }
        int written = put_value(&b, value, kind[i]);
        Py_DECREF(value);
        if (written == 0) {
            goto done;
        }
        if (written < 0) {
            result = PyObject_Vectorcall(python, args + 1, 3, NULL);
            goto done;
        }
    }
    static const char POSITION[] = "},\"position\":";
    if (!buf_put(&b, POSITION, (Py_ssize_t)sizeof POSITION - 1)) {
        goto done;
    }
    PyObject *head = PyBytes_FromStringAndSize(b.data, b.len);
    if (head == NULL) {
        goto done;
    }
    static const char TIME[] = ",\"time\":";
    char stamp[48];
    memcpy(stamp, TIME, sizeof TIME - 1);
    int stamp_width = (int)sizeof TIME - 1 + decimal(stamp + sizeof TIME - 1, when);
    PyObject *tail = PyBytes_FromStringAndSize(NULL, stamp_width + PyBytes_GET_SIZE(tail_end));
    if (tail == NULL) {
        Py_DECREF(head);
        goto done;
    }
    memcpy(PyBytes_AS_STRING(tail), stamp, (size_t)stamp_width);
    memcpy(PyBytes_AS_STRING(tail) + stamp_width, PyBytes_AS_STRING(tail_end),
           (size_t)PyBytes_GET_SIZE(tail_end));
    /* Pending(type_name, head, tail), allocated as tuple.__new__(Pending, ...) does */
    PyTypeObject *cls = (PyTypeObject *)pending;
    result = cls->tp_alloc(cls, 3);
    if (result == NULL) {
        Py_DECREF(head);
        Py_DECREF(tail);
        goto done;
    }
    PyTuple_SET_ITEM(result, 0, Py_NewRef(type_name));
    PyTuple_SET_ITEM(result, 1, head);
    PyTuple_SET_ITEM(result, 2, tail);
done:
    if (b.data != b.inline_buf) {
        PyMem_Free(b.data);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"check_links", (PyCFunction)(void (*)(void))check_links, METH_FASTCALL,
     "check_links(previous, payloads): the stored hash of the last payload when every "
     "link holds, else None (events.chain.check_links, in C)."},
    {"seal_chain", (PyCFunction)(void (*)(void))seal_chain, METH_FASTCALL,
     "seal_chain(pending, position, previous): (stored payloads, last hash) of pending "
     "(name, head, tail) entries numbered from position + 1, chained to previous."},
    {"frame", (PyCFunction)(void (*)(void))frame, METH_FASTCALL,
     "frame(spec, event, time, cause): events.codec's framer for the class of spec, "
     "in C; values it does not write itself go to the Python framer in spec."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "The hot loops of events.chain and events.codec in C.", -1, methods, NULL, NULL, NULL, NULL,
};

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (!setup()) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA256");
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    /* The sha256 of this file as built (setup.py defines it): a binary older than
     * its source is not used (events/chain.py). */
    if (module != NULL && PyModule_AddStringConstant(module, "SOURCE_SHA256", SOURCE_SHA256) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
