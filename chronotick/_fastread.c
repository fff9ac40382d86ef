/*
 * chronotick._fastread: the hot read of ChronoTickClient.now_ns() / now(), in C.
 *
 * Why: in pure Python a read costs about 1 us (a struct unpack, two clock reads, a dozen
 * bytecodes of checks and arithmetic), 20-30x time.time_ns(). Here the same read is a few
 * loads, two vDSO clock reads and a tuple, well under 10x.
 *
 * Contract: docs/shm-layout.md, "Reading a consistent record" (the one-pass hot read) and
 * "Using a record". The answer must be bit-identical to the Python path in
 * chronotick/client.py (interval_from_hot), which computes with Python ints and doubles:
 *   corrected = t + offset_ns + int(drift_ppb * dt * 1e-9)
 *   half      = bound_ns + int(bound_rate_ppb * dt * 1e-9)
 * so the C code converts dt to double, multiplies drift * dt first, then by 1e-9, and
 * truncates toward zero, in that order, and does the integer checks in 128 bits (Python ints
 * do not overflow). Whenever it cannot give the very answer Python would (a refusal, a result
 * outside int64, a non-finite or huge product, a writer stuck mid-write, a simulated base clock)
 * it returns None and the Python path decides, and raises the right exception.
 *
 * The reader keeps a buffer export (Py_buffer) of the mmap object: the mapping cannot be closed
 * or unmapped under it. release() drops the export; SegmentReader.close() calls it before it
 * closes the mmap (mmap.close() refuses while an export exists).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the segment is little-endian and this reader loads its fields natively"
#endif
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "double arithmetic must round to double after each operation to match Python"
#endif
#if !defined(__SIZEOF_INT128__)
#error "the checks need 128-bit integers to match Python's unbounded ints"
#endif

/* Bumped whenever the interface below changes; chronotick/shm.py ignores a build that
 * does not say the version it expects (a stale .so from an older source). */
#define API_VERSION 1

/* Offsets from docs/shm-layout.md (tests check them against chronotick/shm.py). */
#define SEGMENT_SIZE 512
#define LAYOUT_VERSION 1
#define VERSION_OFFSET 8
#define HOT_OFFSET 16 /* generation */
#define AS_OF_OFFSET 24
#define AS_OF_MONO_OFFSET 32
#define VOID_AFTER_OFFSET 40
#define OFFSET_OFFSET 48
#define DRIFT_OFFSET 56
#define BOUND_OFFSET 64
#define RATE_OFFSET 72
#define STATUS_OFFSET 80
#define FLAGS_OFFSET 84
#define TAIL_OFFSET 88
#define CLOCK_KIND_OFFSET 180
#define CLOCK_PARAMS_OFFSET 256

#define STATUS_SYNCHRONIZED 1u
#define STATUS_FREE_RUNNING 2u
#define FLAG_CLOSED 1u
#define STEP_TOLERANCE_NS 1000000
#define NS_PER_S 1000000000LL
/* Attempts at a consistent copy before handing over to Python, which waits (and yields the
 * CPU) for a writer descheduled mid-write. A write takes well under a microsecond. */
#define SPINS 64

/* wide enough for every sum and difference of two int64 values */
__extension__ typedef __int128 i128;

typedef struct {
    uint64_t generation;
    int64_t as_of;
    int64_t as_of_mono;
    int64_t void_after;
    int64_t offset;
    double drift;
    int64_t bound;
    double rate;
    uint32_t status;
    uint32_t flags;
} Hot;

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    /* the mapped segment; NULL once released */
    const unsigned char *base;
    /* 1 when the segment's base clock is CLOCK_REALTIME (clock_kind 0, no clock parameters) */
    int realtime_base;
} Reader;

/* Acquire loads: no later load moves before them, on any architecture (plain loads on x86-64).
 * The segment comes from mmap, so it has no declared type and 8-byte alignment is checked when
 * the reader is made. */
static inline uint64_t
load_u64(const unsigned char *p)
{
    return __atomic_load_n((const uint64_t *)(const void *)p, __ATOMIC_ACQUIRE);
}

static inline uint32_t
load_u32(const unsigned char *p)
{
    return __atomic_load_n((const uint32_t *)(const void *)p, __ATOMIC_ACQUIRE);
}

static inline double
load_f64(const unsigned char *p)
{
    uint64_t bits = load_u64(p);
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* The one-pass hot read: generation, the fields in increasing address order, generation_tail.
 * 1: a consistent copy in *h; 0: the writer was mid-write on every attempt. */
static int
read_hot(const unsigned char *b, Hot *h)
{
    for (int i = 0; i < SPINS; i++) {
        uint64_t g = load_u64(b + HOT_OFFSET);
        h->as_of = (int64_t)load_u64(b + AS_OF_OFFSET);
        h->as_of_mono = (int64_t)load_u64(b + AS_OF_MONO_OFFSET);
        h->void_after = (int64_t)load_u64(b + VOID_AFTER_OFFSET);
        h->offset = (int64_t)load_u64(b + OFFSET_OFFSET);
        h->drift = load_f64(b + DRIFT_OFFSET);
        h->bound = (int64_t)load_u64(b + BOUND_OFFSET);
        h->rate = load_f64(b + RATE_OFFSET);
        h->status = load_u32(b + STATUS_OFFSET);
        h->flags = load_u32(b + FLAGS_OFFSET);
        uint64_t tail = load_u64(b + TAIL_OFFSET);
        if (g == tail && g != 0 && !(g & 1)) {
            h->generation = g;
            return 1;
        }
        cpu_relax();
    }
    return 0;
}

static inline int64_t
clock_ns(clockid_t id)
{
    /* what time.time_ns() and time.monotonic_ns() read on Linux */
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static inline i128
abs128(i128 x)
{
    return x < 0 ? -x : x;
}

/* Python's int(x) for a double, when the result fits int64 (C's cast truncates toward zero as
 * int() does). 0 when it does not fit or x is NaN: Python would give a big int or raise. */
static inline int
trunc_to_i64(double x, int64_t *out)
{
    if (!(x >= -0x1p63 && x < 0x1p63)) {
        return 0;
    }
    *out = (int64_t)x;
    return 1;
}

/* The interval at base-clock reading t and CLOCK_MONOTONIC reading m, exactly as
 * interval_from_hot() in chronotick/client.py. 1: *earliest, *latest set; 0: refuse. */
static int
interval(const Hot *h, int64_t t, int64_t m, int64_t *earliest, int64_t *latest)
{
    if (h->status != STATUS_SYNCHRONIZED && h->status != STATUS_FREE_RUNNING) {
        return 0;
    }
    if (m > h->void_after || (h->flags & FLAG_CLOSED)) {
        return 0;
    }
    /* the step rule: |Δreal − Δmono| <= 1 ms + |Δmono| / 2048 (floor, as Python's >> 11) */
    i128 age = (i128)m - h->as_of_mono;
    i128 skew = (i128)t - h->as_of - age;
    if (abs128(skew) > STEP_TOLERANCE_NS + (abs128(age) >> 11)) {
        return 0;
    }
    /* dt fits int64 here in practice; beyond it Python's int -> float is still exact-rounded,
     * but leave that case to Python rather than reason about i128 -> double */
    i128 dt = t > h->as_of ? (i128)t - h->as_of : 0;
    if (dt > INT64_MAX) {
        return 0;
    }
    double dt_f = (double)(int64_t)dt;
    int64_t drift_ns, rate_ns;
    if (!trunc_to_i64(h->drift * dt_f * 1e-9, &drift_ns) ||
        !trunc_to_i64(h->rate * dt_f * 1e-9, &rate_ns)) {
        return 0;
    }
    i128 corrected = (i128)t + h->offset + drift_ns;
    i128 half = (i128)h->bound + rate_ns;
    i128 lo = corrected - half;
    i128 hi = corrected + half;
    if (lo < INT64_MIN || lo > INT64_MAX || hi < INT64_MIN || hi > INT64_MAX) {
        return 0;
    }
    *earliest = (int64_t)lo;
    *latest = (int64_t)hi;
    return 1;
}

/* ns / 1e9 rounded once, to nearest (ties to even): what Python's int / int true division
 * gives. Converting to double first and then dividing would round twice once |ns| > 2^53
 * (every present-day time in ns is), and could differ in the last bit. */
static double
ns_to_seconds(int64_t ns)
{
    if (ns > -(1LL << 53) && ns < (1LL << 53)) {
        return (double)ns / 1e9; /* exact operand: one rounding */
    }
    uint64_t a = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    uint64_t q = a / (uint64_t)NS_PER_S; /* 2^53 / 1e9 > 2^23 <= q < 2^35 */
    uint64_t r = a % (uint64_t)NS_PER_S;
    int bits = 64 - __builtin_clzll(q);
    int frac_bits = 53 - bits; /* 19 .. 29: q << frac_bits has exactly 53 bits */
    uint64_t scaled = r << frac_bits; /* < 2^30 * 2^29: no overflow */
    uint64_t n = (q << frac_bits) + scaled / (uint64_t)NS_PER_S;
    uint64_t rest = scaled % (uint64_t)NS_PER_S;
    if (2 * rest > (uint64_t)NS_PER_S || (2 * rest == (uint64_t)NS_PER_S && (n & 1))) {
        n += 1; /* at most 2^53: still exact in a double */
    }
    double value = ldexp((double)n, -frac_bits);
    return ns < 0 ? -value : value;
}

/* The interval of the current record at clock readings taken after the copy (or given: tests
 * compare with Python at the same instant). 1: ok; 0: refuse, Python decides (released,
 * mid-write, simulated clock, any rule); -1: exception set (bad arguments). */
static int
read_interval(Reader *self, PyObject *const *args, Py_ssize_t nargs, int64_t *earliest,
              int64_t *latest)
{
    int64_t t = 0, m = 0;
    Hot h;
    if (nargs == 2) {
        t = PyLong_AsLongLong(args[0]);
        if (t == -1 && PyErr_Occurred()) {
            return -1;
        }
        m = PyLong_AsLongLong(args[1]);
        if (m == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    else if (nargs != 0) {
        PyErr_SetString(PyExc_TypeError, "expected no arguments, or (realtime_ns, monotonic_ns)");
        return -1;
    }
    if (self->base == NULL || !self->realtime_base || !read_hot(self->base, &h)) {
        return 0;
    }
    if (nargs == 0) { /* after the copy, as the Python path reads them */
        t = clock_ns(CLOCK_REALTIME);
        m = clock_ns(CLOCK_MONOTONIC);
    }
    return interval(&h, t, m, earliest, latest);
}

static PyObject *
pair(PyObject *a, PyObject *b)
{
    if (a == NULL || b == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return NULL;
    }
    PyObject *tuple = PyTuple_New(2);
    if (tuple == NULL) {
        Py_DECREF(a);
        Py_DECREF(b);
        return NULL;
    }
    PyTuple_SET_ITEM(tuple, 0, a);
    PyTuple_SET_ITEM(tuple, 1, b);
    return tuple;
}

static PyObject *
Reader_now_ns(Reader *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t earliest, latest;
    int ok = read_interval(self, args, nargs, &earliest, &latest);
    if (ok < 0) {
        return NULL;
    }
    if (ok == 0) {
        Py_RETURN_NONE;
    }
    return pair(PyLong_FromLongLong(earliest), PyLong_FromLongLong(latest));
}

static PyObject *
Reader_now(Reader *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t earliest, latest;
    int ok = read_interval(self, args, nargs, &earliest, &latest);
    if (ok < 0) {
        return NULL;
    }
    if (ok == 0) {
        Py_RETURN_NONE;
    }
    return pair(PyFloat_FromDouble(ns_to_seconds(earliest)),
                PyFloat_FromDouble(ns_to_seconds(latest)));
}

static PyObject *
Reader_hot_fields(Reader *self, PyObject *Py_UNUSED(ignored))
{
    /* the consistent copy now_ns() works from, as chronotick.shm.HOT unpacks it: lets tests
     * check the C seqlock read against a writer directly */
    Hot h;
    if (self->base == NULL || !read_hot(self->base, &h)) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(KLLLLdLdIIK)", (unsigned long long)h.generation, (long long)h.as_of,
                         (long long)h.as_of_mono, (long long)h.void_after, (long long)h.offset,
                         h.drift, (long long)h.bound, h.rate, (unsigned int)h.status,
                         (unsigned int)h.flags, (unsigned long long)h.generation);
}

static void
release(Reader *self)
{
    if (self->base != NULL) {
        self->base = NULL;
        PyBuffer_Release(&self->view);
    }
}

static PyObject *
Reader_release(Reader *self, PyObject *Py_UNUSED(ignored))
{
    release(self);
    Py_RETURN_NONE;
}

static PyObject *
Reader_get_released(Reader *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->base == NULL);
}

static PyObject *
Reader_get_realtime_base(Reader *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->realtime_base);
}

static PyObject *
Reader_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *segment;
    static char *kwlist[] = {"segment", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Reader", kwlist, &segment)) {
        return NULL;
    }
    Reader *self = (Reader *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    if (PyObject_GetBuffer(segment, &self->view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    const unsigned char *b = (const unsigned char *)self->view.buf;
    const char *problem = NULL;
    if (self->view.len < SEGMENT_SIZE) {
        problem = "the segment is shorter than 512 bytes";
    }
    else if ((uintptr_t)b % 8 != 0) {
        problem = "the segment is not 8-byte aligned";
    }
    else if (memcmp(b, "CHRNTICK", 8) != 0) {
        problem = "not a ChronoTick segment (magic)";
    }
    else if (b[VERSION_OFFSET] != LAYOUT_VERSION || b[VERSION_OFFSET + 1] != 0) {
        problem = "layout version is not 1";
    }
    if (problem != NULL) {
        PyBuffer_Release(&self->view);
        Py_DECREF(self);
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    self->base = b;
    /* Constant for the life of a segment: clock_kind is rewritten with every record but always
     * to the same value, and the clock parameters are written once before the segment appears.
     * A simulated base clock needs Python (chronotick/clocks.py) to read it. */
    self->realtime_base = load_u32(b + CLOCK_KIND_OFFSET) == 0 && b[CLOCK_PARAMS_OFFSET] == 0;
    return (PyObject *)self;
}

static void
Reader_dealloc(Reader *self)
{
    release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Reader_methods[] = {
    {"now_ns", (PyCFunction)(void (*)(void))Reader_now_ns, METH_FASTCALL,
     "now_ns(realtime_ns=None, monotonic_ns=None, /)\n--\n\n"
     "(earliest, latest) in ns, or None when the Python path must decide."},
    {"now", (PyCFunction)(void (*)(void))Reader_now, METH_FASTCALL,
     "now(realtime_ns=None, monotonic_ns=None, /)\n--\n\n"
     "(earliest, latest) in seconds (ns / 10**9 as Python divides), or None."},
    {"hot_fields", (PyCFunction)Reader_hot_fields, METH_NOARGS,
     "The consistent copy of the hot fields a read works from (as HOT unpacks them), or None "
     "when the writer was mid-write on every attempt."},
    {"release", (PyCFunction)Reader_release, METH_NOARGS,
     "Drop the buffer export of the mapping; the reader then answers None."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Reader_getset[] = {
    {"released", (getter)Reader_get_released, NULL, "Whether release() was called.", NULL},
    {"realtime_base", (getter)Reader_get_realtime_base, NULL,
     "Whether the segment's base clock is CLOCK_REALTIME (else every read answers None).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "chronotick._fastread.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Reader(segment)\n--\n\n"
                        "The hot read of a mapped ChronoTick segment (an mmap of 512+ bytes)."),
    .tp_methods = Reader_methods,
    .tp_getset = Reader_getset,
    .tp_new = Reader_new,
};

static PyObject *
fastread_ns_to_seconds(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long long ns = PyLong_AsLongLong(arg);
    if (ns == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyFloat_FromDouble(ns_to_seconds(ns));
}

/* sleep_until_realtime_ns(target_ns, spin_ns) -> the CLOCK_REALTIME reading it woke at.
 *
 * The whole wait, and the reading that ends it, run with the GIL released: a thread woken for
 * a sync point in Python must first win the interpreter back from the process's other threads,
 * and on a busy host that costs hundreds of microseconds; here the instant is read first and
 * the interpreter taken back after. Sleeps until spin_ns before the target, then spins. The
 * caller keeps waits short (the target at most 10 s ahead): signals are seen only on return. */
static PyObject *
fastread_sleep_until_realtime_ns(PyObject *Py_UNUSED(module), PyObject *const *args,
                                 Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sleep_until_realtime_ns(target_ns, spin_ns)");
        return NULL;
    }
    long long target = PyLong_AsLongLong(args[0]);
    if (target == -1 && PyErr_Occurred()) {
        return NULL;
    }
    long long spin = PyLong_AsLongLong(args[1]);
    if (spin == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (spin < 0 || spin > NS_PER_S) {
        PyErr_SetString(PyExc_ValueError, "spin_ns must be between 0 and 1 s");
        return NULL;
    }
    if (target < 0 || target - clock_ns(CLOCK_REALTIME) > 10 * (long long)NS_PER_S) {
        PyErr_SetString(PyExc_ValueError,
                        "target negative, or more than 10 s ahead: sleep in Python first");
        return NULL;
    }
    int64_t stamp;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        int64_t now = clock_ns(CLOCK_REALTIME);
        int64_t left = (int64_t)target - now;
        if (left <= 0) {
            stamp = now;
            break;
        }
        if (left > spin) {
            int64_t nap = left - spin;
            struct timespec ts = {(time_t)(nap / NS_PER_S), (long)(nap % NS_PER_S)};
            nanosleep(&ts, NULL); /* interrupted: the loop looks again */
        }
        else {
            cpu_relax();
        }
    }
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong((long long)stamp);
}

static PyMethodDef module_methods[] = {
    {"sleep_until_realtime_ns", (PyCFunction)(void (*)(void))fastread_sleep_until_realtime_ns,
     METH_FASTCALL,
     "sleep_until_realtime_ns(target_ns, spin_ns) -> the CLOCK_REALTIME reading it woke at,\n"
     "waiting and reading with the GIL released."},
    {"ns_to_seconds", fastread_ns_to_seconds, METH_O,
     "ns_to_seconds(ns, /)\n--\n\nns / 10**9 as now() computes it (for tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastread_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "chronotick._fastread",
    .m_doc = "The hot read of a ChronoTick segment in C (see chronotick/_fastread.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__fastread(void)
{
    if (PyType_Ready(&ReaderType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&fastread_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    struct {
        const char *name;
        long long value;
    } constants[] = {
        {"API_VERSION", API_VERSION},
        {"SEGMENT_SIZE", SEGMENT_SIZE},
        {"LAYOUT_VERSION", LAYOUT_VERSION},
        {"HOT_OFFSET", HOT_OFFSET},
        {"FLAGS_OFFSET", FLAGS_OFFSET},
        {"TAIL_OFFSET", TAIL_OFFSET},
        {"CLOCK_KIND_OFFSET", CLOCK_KIND_OFFSET},
        {"CLOCK_PARAMS_OFFSET", CLOCK_PARAMS_OFFSET},
        {"FLAG_CLOSED", FLAG_CLOSED},
        {"STEP_TOLERANCE_NS", STEP_TOLERANCE_NS},
        {"SPINS", SPINS},
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
        if (PyModule_AddIntConstant(m, constants[i].name, (long)constants[i].value) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
