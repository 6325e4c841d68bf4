/* The loops of the per-frame path that run once per frame before any probe does:
 * walking the records of a pcap file or the frames of a capture ring block, and
 * the sieve that drops frames the probes have already judged.
 *
 * Records(data, offset, big_endian, scale, name, error, release, snaplen, partial=False)
 *     Iterator of (timestamp, frame bytes) over the classic pcap records of `data`
 *     (a buffer: the mapped file) from `offset`, the file header already checked
 *     by ixpect.pcap. A damaged record raises `error` after the frames before it.
 *     `snaplen` (the file header's) is kept as an attribute for the engine.
 *     With `release` (data must then be a read-only file mapping) the pages walked
 *     are given back as it goes, so that a replay's RSS does not grow with the file.
 *     With `partial` (data is what has arrived of a stream) a record cut off at the
 *     end stops the walk without error; `offset` is then where it starts. A `budget`
 *     of n >= 0 pauses the iteration after n more records (done: none left at all).
 *
 * Block(ring, offset, count)
 *     Iterator of the (timestamp, frame bytes) of the `count` frames of a TPACKET_V3
 *     ring block (the memory-mapped ring, the block's first frame at `offset`); its
 *     length is the frames not walked yet; close() stops it before the block goes
 *     back to the kernel. A VLAN tag the NIC stripped is put back, so that the frame
 *     is as on the wire.
 *
 * Sieve(spec, limit, tally)
 *     spec: {EtherType: rule or [rule, ...]} (at most MAX_RULES rules in all), a rule
 *     being (min_len, ((start, end), ...)[, length_at, base[, open_end, guards]]) with
 *     guards ((at, accepted), ...).
 *     A frame's fingerprint is its bytes in the ranges of its rule, concatenated; only
 *     untagged frames of a listed EtherType at least min_len long have one, and with
 *     length_at only those whose packet ends within min_len: base plus the 16-bit
 *     big-endian length field at length_at (IPv6: 54 + payload length), so that the
 *     ranges can cover every byte a decoder reads of it. With open_end the packet
 *     must instead end within the frame and not before min_len: the ranges cover its
 *     headers, for packets whose payload nobody reads. Each (at, accepted) guard
 *     takes only frames whose byte at `at` is one of `accepted` (32 bytes, a bit per
 *     value): an IP version, the protocols no probe reads the payload of. A frame's
 *     rule is the first of its EtherType that takes it; each rule keeps fingerprints
 *     of its own. teach(frame) remembers the frame's
 *     fingerprint: the engine calls it for a frame every probe let pass silently,
 *     the probes having declared that these bytes decide their verdict
 *     (ixpect.engine). over(frames) iterates the (timestamp, frame) pairs of
 *     `frames` but swallows each frame whose fingerprint it remembers, except at or
 *     after `deadline`, so that timers run. Over Records or a Block it decides on the
 *     bytes where the reader has them: a swallowed frame never becomes an object.
 *     Swallowed frames are counted per EtherType (counts()); `last` is the latest
 *     time of one. At most `limit`
 *     fingerprints are kept per rule: when they fill up the sieve starts over,
 *     unless they saved fewer frames than there are of them; then it gives the
 *     rule up (teach() returns False, given_up() lists it) and lets its frames
 *     through. forget() drops every fingerprint, for a probe whose verdicts are no
 *     longer final.
 *     With `tally`, for the probes that count frames, it swallows a frame only once a
 *     frame of the same source MAC and destination class (broadcast, multicast,
 *     unicast) was taught since the last recount(): a counting probe's window sees
 *     each source's first frame, whatever fingerprints it learned. And it counts the
 *     frames it swallowed per source: tallies() gives [(source, frames swallowed)]
 *     since its last call, where source is the class (0, 1, 2) and the source MAC,
 *     7 bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_FRAME 262144
#define RELEASE_STEP (8 << 20)
#define MAX_KEY 256
#define MAX_RANGES 16
#define MAX_RULES 64
#define MAX_GUARDS 8

/* -- Raw frames --------------------------------------------------------------- */

/* A frame where a reader has it, before it is a Python object. */
typedef struct {
    double ts;
    const unsigned char *p;
    Py_ssize_t len;
    int tagged;                          /* a tag to put back before the EtherType */
    unsigned tpid, tci;
} Raw;

/* A reader's next frame: 1, 0 at its end, -1 with an exception. */
typedef int (*Step)(PyObject *reader, Raw *f);

/* The (timestamp, frame bytes) pair of a raw frame. */
static PyObject *raw_pair(const Raw *f)
{
    PyObject *bytes;
    if (f->tagged) {
        bytes = PyBytes_FromStringAndSize(NULL, f->len + 4);
        if (!bytes)
            return NULL;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(bytes);
        memcpy(out, f->p, 12);
        out[12] = f->tpid >> 8, out[13] = f->tpid & 0xFF, out[14] = f->tci >> 8, out[15] = f->tci & 0xFF;
        memcpy(out + 16, f->p + 12, f->len - 12);
    } else if (!(bytes = PyBytes_FromStringAndSize((const char *)f->p, f->len))) {
        return NULL;
    }
    PyObject *ts = PyFloat_FromDouble(f->ts), *pair = ts ? PyTuple_New(2) : NULL;
    if (!pair) {
        Py_XDECREF(ts);
        Py_DECREF(bytes);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, ts);
    PyTuple_SET_ITEM(pair, 1, bytes);
    return pair;
}

/* -- Records ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int held;
    Py_ssize_t off, released, snaplen, budget;
    int big, release, partial;
    double scale;
    PyObject *name;
    PyObject *error;
} Records;

static inline unsigned long rd32(const unsigned char *p, int big)
{
    return big ? (unsigned long)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]
               : (unsigned long)p[3] << 24 | p[2] << 16 | p[1] << 8 | p[0];
}

static void records_release(Records *self)
{
    if (self->held) {
        PyBuffer_Release(&self->view);
        self->held = 0;
    }
}

static int records_init(Records *self, PyObject *args, PyObject *kwds)
{
    PyObject *data, *name, *error;
    self->partial = 0;
    if (!PyArg_ParseTuple(args, "OnpdUOpn|p", &data, &self->off, &self->big, &self->scale, &name, &error,
                          &self->release, &self->snaplen, &self->partial))
        return -1;
    records_release(self);
    if (self->off < 0) {
        PyErr_SetString(PyExc_ValueError, "a negative offset");
        return -1;
    }
    if (PyObject_GetBuffer(data, &self->view, PyBUF_SIMPLE) < 0)
        return -1;
    self->held = 1;
    self->released = 0;
    self->budget = -1;
    if ((uintptr_t)self->view.buf % sysconf(_SC_PAGESIZE))
        self->release = 0;  /* not a mapping's start */
    Py_XSETREF(self->name, Py_NewRef(name));
    Py_XSETREF(self->error, Py_NewRef(error));
    return 0;
}

static int records_step(PyObject *reader, Raw *f)
{
    Records *self = (Records *)reader;
    if (!self->held || !self->budget)
        return 0;
    const unsigned char *data = self->view.buf;
    Py_ssize_t n = self->view.len, off = self->off;
    if (off + 16 > n) {
        int damaged = off != n && !self->partial;
        if (damaged)
            PyErr_Format(self->error, "%U: truncated record header at offset %zd", self->name, off);
        records_release(self);
        return -damaged;
    }
    unsigned long sec = rd32(data + off, self->big), frac = rd32(data + off + 4, self->big);
    unsigned long incl = rd32(data + off + 8, self->big);
    if (incl > MAX_FRAME || off + 16 + (Py_ssize_t)incl > n) {
        int damaged = incl > MAX_FRAME || !self->partial;
        if (damaged)
            PyErr_Format(self->error, "%U: truncated or corrupt record at offset %zd", self->name, off);
        records_release(self);
        return -damaged;
    }
    self->off = off + 16 + incl;
    self->budget -= self->budget > 0;
    if (self->release && off - self->released >= RELEASE_STEP) {
        Py_ssize_t upto = off - off % sysconf(_SC_PAGESIZE);
        madvise((char *)self->view.buf + self->released, upto - self->released, MADV_DONTNEED);
        self->released = upto;
    }
    *f = (Raw){(double)sec + (double)frac * self->scale, data + off + 16, (Py_ssize_t)incl};
    return 1;
}

static PyObject *records_next(Records *self)
{
    Raw f;
    return records_step((PyObject *)self, &f) > 0 ? raw_pair(&f) : NULL;
}

static PyObject *records_done(Records *self, void *unused)
{
    return PyBool_FromLong(!self->held);
}

static PyGetSetDef records_getset[] = {
    {"done", (getter)records_done, NULL, "Every record walked (or the walk failed).", NULL},
    {NULL},
};

static void records_dealloc(Records *self)
{
    records_release(self);
    Py_XDECREF(self->name);
    Py_XDECREF(self->error);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef records_members[] = {
    {"snaplen", T_PYSSIZET, offsetof(Records, snaplen), READONLY, "The capture's snapshot length."},
    {"offset", T_PYSSIZET, offsetof(Records, off), READONLY, "where the next record starts"},
    {"budget", T_PYSSIZET, offsetof(Records, budget), 0, "records to walk before pausing (-1: no limit)"},
    {NULL},
};

static PyTypeObject RecordsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ixpect._frames.Records",
    .tp_basicsize = sizeof(Records),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "(timestamp, frame) pairs of the classic pcap records in a buffer.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)records_init,
    .tp_dealloc = (destructor)records_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)records_next,
    .tp_members = records_members,
    .tp_getset = records_getset,
};

/* -- TPACKET_V3 blocks ---------------------------------------------------------- */

/* struct tpacket3_hdr (linux/if_packet.h), host byte order */
#define TP_NEXT 0
#define TP_SEC 4
#define TP_NSEC 8
#define TP_SNAPLEN 12
#define TP_STATUS 20
#define TP_MAC 24
#define TP_VLAN_TCI 32
#define TP_VLAN_TPID 36
#define TP_HEADER 40
#define TP_STATUS_VLAN_VALID 0x10
#define TP_STATUS_VLAN_TPID_VALID 0x40

static inline uint32_t host32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint16_t host16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

typedef struct {
    PyObject_HEAD
    Py_buffer ring;
    int held;
    Py_ssize_t off, left;
} Block;

static void block_release(Block *self)
{
    if (self->held) {
        PyBuffer_Release(&self->ring);
        self->held = 0;
    }
    self->left = 0;
}

static int block_init(Block *self, PyObject *args, PyObject *kwds)
{
    PyObject *ring;
    block_release(self);
    if (!PyArg_ParseTuple(args, "Onn", &ring, &self->off, &self->left) ||
        PyObject_GetBuffer(ring, &self->ring, PyBUF_SIMPLE) < 0)
        return -1;
    self->held = 1;
    return 0;
}

static int block_step(PyObject *reader, Raw *f)
{
    Block *self = (Block *)reader;
    if (self->left <= 0) {
        block_release(self);
        return 0;
    }
    Py_ssize_t off = self->off;
    if (off < 0 || off + TP_HEADER > self->ring.len) {
        PyErr_SetString(PyExc_ValueError, "TPACKET_V3 header beyond the ring");
        block_release(self);
        return -1;
    }
    const unsigned char *h = (const unsigned char *)self->ring.buf + off;
    uint32_t snaplen = host32(h + TP_SNAPLEN), status = host32(h + TP_STATUS);
    Py_ssize_t at = off + host16(h + TP_MAC);
    if (snaplen > MAX_FRAME || at + (Py_ssize_t)snaplen > self->ring.len) {
        PyErr_SetString(PyExc_ValueError, "TPACKET_V3 frame beyond its block");
        block_release(self);
        return -1;
    }
    *f = (Raw){(double)host32(h + TP_SEC) + (double)host32(h + TP_NSEC) * 1e-9,
               (const unsigned char *)self->ring.buf + at, snaplen};
    if (status & TP_STATUS_VLAN_VALID && snaplen >= 12) {
        f->tagged = 1;
        f->tpid = status & TP_STATUS_VLAN_TPID_VALID ? host16(h + TP_VLAN_TPID) : 0x8100;
        f->tci = host32(h + TP_VLAN_TCI) & 0xFFFF;
    }
    self->off = off + host32(h + TP_NEXT);
    self->left--;
    return 1;
}

static PyObject *block_next(Block *self)
{
    Raw f;
    return block_step((PyObject *)self, &f) > 0 ? raw_pair(&f) : NULL;
}

static Py_ssize_t block_len(Block *self)
{
    return self->left;
}

static PyObject *block_close(Block *self, PyObject *unused)
{
    block_release(self);
    Py_RETURN_NONE;
}

static void block_dealloc(Block *self)
{
    block_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PySequenceMethods block_sequence = {.sq_length = (lenfunc)block_len};

static PyMethodDef block_methods[] = {
    {"close", (PyCFunction)block_close, METH_NOARGS, "Walk no further: the block goes back to the kernel."},
    {NULL},
};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ixpect._frames.Block",
    .tp_basicsize = sizeof(Block),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "(timestamp, frame) pairs of the frames of a TPACKET_V3 ring block.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)block_init,
    .tp_dealloc = (destructor)block_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)block_next,
    .tp_as_sequence = &block_sequence,
    .tp_methods = block_methods,
};

/* -- Keys: a set of byte strings of one length ------------------------------ */

/* Open addressing over the keys, kept in the order they came (their index) with a
 * count each: no Python object per key or per lookup. Hashed with CPython's own
 * (randomised SipHash) bytes hash, so that made-up frames cannot pile up in one
 * chain. */
typedef struct {
    Py_ssize_t len, size, room;          /* key length; keys held; keys the arrays have room for */
    size_t mask;                         /* slots - 1: a power of 2 minus 1, or 0 with no slots */
    uint64_t *slots;                     /* 0 free, else the hash's low 32 bits << 32 | index + 1: the
                                            table grows without hashing its keys again */
    unsigned char *keys;                 /* size keys of len bytes, in the order they came */
    unsigned long long *values;          /* with `valued`, one per key (0 at first) */
    int valued;
} Keys;

static void keys_free(Keys *k)
{
    PyMem_Free(k->slots);
    PyMem_Free(k->keys);
    PyMem_Free(k->values);
    k->slots = NULL, k->keys = NULL, k->values = NULL;
    k->size = k->room = 0, k->mask = 0;
}

static inline uint64_t keys_tag(Py_hash_t h)
{
    return (uint64_t)(uint32_t)h << 32;
}

/* The slot a key of hash (or tag) `h` starts looking at. */
static inline size_t keys_home(const Keys *k, uint64_t h)
{
    return (uint32_t)h & k->mask;
}

/* The key's index, or -1. */
static Py_ssize_t keys_find(const Keys *k, const unsigned char *key, Py_hash_t h)
{
    if (!k->size)
        return -1;
    for (size_t i = keys_home(k, (uint64_t)h);; i = (i + 1) & k->mask) {
        uint64_t slot = k->slots[i];
        if (!slot)
            return -1;
        Py_ssize_t index = (Py_ssize_t)(slot & 0xFFFFFFFF) - 1;
        if ((slot & 0xFFFFFFFF00000000ULL) == keys_tag(h) && !memcmp(k->keys + index * k->len, key, k->len))
            return index;
    }
}

static void keys_slot(Keys *k, uint64_t slot)
{
    size_t i = keys_home(k, slot >> 32);
    while (k->slots[i])
        i = (i + 1) & k->mask;
    k->slots[i] = slot;
}

/* Add a key not held yet; its index, or -1 with MemoryError. */
static Py_ssize_t keys_add(Keys *k, const unsigned char *key, Py_hash_t h)
{
    if (k->size == k->room) {
        Py_ssize_t room = k->room ? 2 * k->room : 64;
        unsigned char *keys = PyMem_Realloc(k->keys, room * k->len);
        if (keys)
            k->keys = keys;
        unsigned long long *values = keys && k->valued ? PyMem_Realloc(k->values, room * sizeof *values) : NULL;
        if (!keys || (k->valued && !values)) {
            PyErr_NoMemory();
            return -1;
        }
        if (values) {
            memset(values + k->room, 0, (room - k->room) * sizeof *values);
            k->values = values;
        }
        k->room = room;
    }
    if ((size_t)(k->size + 1) * 4 > (k->mask + 1) * 3 || !k->slots) {  /* at most 3/4 full */
        size_t slots = k->slots ? 2 * (k->mask + 1) : 128;
        uint64_t *fresh = PyMem_Calloc(slots, sizeof *fresh);
        if (!fresh) {
            PyErr_NoMemory();
            return -1;
        }
        uint64_t *old = k->slots;
        size_t n = old ? k->mask + 1 : 0;
        k->slots = fresh;
        k->mask = slots - 1;
        for (size_t i = 0; i < n; i++)
            if (old[i])
                keys_slot(k, old[i]);
        PyMem_Free(old);
    }
    memcpy(k->keys + k->size * k->len, key, k->len);
    keys_slot(k, keys_tag(h) | (uint64_t)(k->size + 1));
    return k->size++;
}

/* -- Sieve -------------------------------------------------------------------- */

typedef struct {
    int ether_type, nranges, forgotten, open_end, nguards;
    int by_source;                       /* the ranges cover both MACs: a fingerprint tells its source */
    Py_ssize_t min_len, length_at, length_base;  /* length_at -1: no length field */
    Py_ssize_t ranges[MAX_RANGES][2];
    Py_ssize_t guard_at[MAX_GUARDS];
    unsigned char guard[MAX_GUARDS][32];        /* a bit per accepted byte value */
    Keys quiet;                          /* fingerprints; with tally and by_source, the index + 1 of
                                            each one's source in `sources` once known (0: not yet) */
    int napart;                          /* ranges whose bytes decide verdicts of their own: */
    Py_ssize_t apart_ranges[MAX_RANGES][2];
    Keys apart;                          /* their fingerprints, learned from quiet frames too */
    unsigned long long frames, bytes;    /* swallowed */
    unsigned long long frames_at_fill;   /* `frames` when `quiet` last filled up */
} Rule;

typedef struct {
    PyObject_HEAD
    Rule rules[MAX_RULES];
    int nrules, tallying;
    Py_ssize_t limit;
    PyObject *source;                    /* what over() iterates */
    Step step;                           /* its step if it is a reader, else NULL */
    PyObject *pending;                   /* with tally: (source, n) not yet handed out */
    PyObject *first;                     /* with tally: counts a source's first frame, or NULL */
    Keys sources;                        /* with tally: class + source MAC taught since recount(),
                                            valued with the frames swallowed of each */
    double deadline, last;
} Sieve;

/* `ranges`, a tuple of (start, end) within the first `min_len` bytes, into `out`;
 * their number, or -1 with an exception. `key_len` gets the bytes they cover. */
static int sieve_ranges(PyObject *ranges, Py_ssize_t min_len, Py_ssize_t out[MAX_RANGES][2], Py_ssize_t *key_len)
{
    Py_ssize_t nr = PyTuple_GET_SIZE(ranges);
    if (nr > MAX_RANGES) {
        PyErr_SetString(PyExc_ValueError, "too many ranges");
        return -1;
    }
    *key_len = 0;
    for (Py_ssize_t i = 0; i < nr; i++) {
        Py_ssize_t a, b;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(ranges, i), "nn", &a, &b))
            return -1;
        int by_class = a == -1 && b == 0;  /* the destination's class: one byte */
        if ((!by_class && (a < 0 || b < a || b > min_len)) || (*key_len += by_class ? 1 : b - a) > MAX_KEY) {
            PyErr_Format(PyExc_ValueError, "range (%zd, %zd) outside the key or the minimum length", a, b);
            return -1;
        }
        out[i][0] = a;
        out[i][1] = b;
    }
    return (int)nr;
}

static int sieve_rule(Rule *rule, PyObject *et, PyObject *value)
{
    PyObject *ranges, *guards = NULL, *apart = NULL;
    rule->ether_type = (int)PyLong_AsLong(et);
    if (rule->ether_type == -1 && PyErr_Occurred())
        return -1;
    rule->length_at = -1;
    if (!PyArg_ParseTuple(value, "nO!|nnpO!O!", &rule->min_len, &PyTuple_Type, &ranges, &rule->length_at,
                          &rule->length_base, &rule->open_end, &PyTuple_Type, &guards, &PyTuple_Type, &apart))
        return -1;
    if (rule->length_at + 2 > rule->min_len) {
        PyErr_SetString(PyExc_ValueError, "length field beyond the minimum length");
        return -1;
    }
    if (rule->open_end && rule->length_at < 0) {
        PyErr_SetString(PyExc_ValueError, "an open end needs a length field");
        return -1;
    }
    Py_ssize_t ng = guards ? PyTuple_GET_SIZE(guards) : 0;
    if (ng > MAX_GUARDS) {
        PyErr_SetString(PyExc_ValueError, "too many guards");
        return -1;
    }
    for (Py_ssize_t i = 0; i < ng; i++) {
        const char *accepted;
        Py_ssize_t n;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(guards, i), "ny#", &rule->guard_at[i], &accepted, &n))
            return -1;
        if (n != 32 || rule->guard_at[i] < 0 || rule->guard_at[i] >= rule->min_len) {
            PyErr_SetString(PyExc_ValueError, "a guard is an offset within the minimum length and 32 bytes");
            return -1;
        }
        memcpy(rule->guard[i], accepted, 32);
    }
    rule->nguards = (int)ng;
    if ((rule->nranges = sieve_ranges(ranges, rule->min_len, rule->ranges, &rule->quiet.len)) < 0 ||
        (apart && (rule->napart = sieve_ranges(apart, rule->min_len, rule->apart_ranges, &rule->apart.len)) < 0))
        return -1;
    int destination = 0, source = 0;  /* the fingerprint tells the source's class and MAC */
    for (int i = 0; i < rule->nranges; i++) {
        Py_ssize_t a = rule->ranges[i][0], b = rule->ranges[i][1];
        destination |= a < 0 || (a == 0 && b >= 6);
        source |= a <= 6 && b >= 12;
    }
    rule->by_source = destination && source;
    return 0;
}

static int sieve_init(Sieve *self, PyObject *args, PyObject *kwds)
{
    PyObject *spec, *et, *value, *first = Py_None;
    Py_ssize_t pos = 0;
    if (!PyArg_ParseTuple(args, "O!n|pO", &PyDict_Type, &spec, &self->limit, &self->tallying, &first))
        return -1;
    if (self->nrules) {
        PyErr_SetString(PyExc_ValueError, "a Sieve takes one spec");
        return -1;
    }
    if (first != Py_None && (!self->tallying || !PyCallable_Check(first))) {
        PyErr_SetString(PyExc_TypeError, "first is a callable, and only with tally");
        return -1;
    }
    Py_XSETREF(self->first, first != Py_None ? Py_NewRef(first) : NULL);
    if (self->tallying && !(self->pending = PyList_New(0)))
        return -1;
    self->sources.len = 7;
    self->sources.valued = 1;
    while (PyDict_Next(spec, &pos, &et, &value)) {
        int many = PyList_Check(value);
        for (Py_ssize_t i = 0; i < (many ? PyList_GET_SIZE(value) : 1); i++) {
            if (self->nrules == MAX_RULES) {
                PyErr_Format(PyExc_ValueError, "a Sieve takes at most %d rules", MAX_RULES);
                return -1;
            }
            Rule *rule = &self->rules[self->nrules];
            if (sieve_rule(rule, et, many ? PyList_GET_ITEM(value, i) : value) < 0)
                return -1;
            rule->quiet.valued = self->tallying && rule->by_source;
            self->nrules++;
        }
    }
    self->deadline = Py_HUGE_VAL;
    self->last = -Py_HUGE_VAL;
    return 0;
}

/* Whether the rule takes this frame of its EtherType. */
static int rule_takes(const Rule *rule, const unsigned char *p, Py_ssize_t len)
{
    if (len < rule->min_len)
        return 0;
    for (int i = 0; i < rule->nguards; i++) {
        unsigned char v = p[rule->guard_at[i]];
        if (!(rule->guard[i][v >> 3] >> (v & 7) & 1))
            return 0;
    }
    if (rule->length_at < 0)
        return 1;
    Py_ssize_t end = rule->length_base + (p[rule->length_at] << 8 | p[rule->length_at + 1]);
    if (rule->open_end)  /* headers complete, packet whole within the frame */
        return end >= rule->min_len && end <= len;
    return end <= rule->min_len;  /* no byte of the packet beyond the ones the ranges cover */
}

/* The rule for this untagged frame: the first of its EtherType that takes it; NULL
 * if there is none, or it was given up. */
static Rule *sieve_rule_for(Sieve *self, const unsigned char *p, Py_ssize_t len)
{
    if (len < 14)
        return NULL;
    int et = p[12] << 8 | p[13];
    for (Rule *rule = self->rules, *end = self->rules + self->nrules; rule < end; rule++)
        if (rule->ether_type == et && rule_takes(rule, p, len))
            return rule->forgotten ? NULL : rule;
    return NULL;
}

/* The frame's destination class: 0 broadcast, 1 another group address, 2 unicast. */
static inline unsigned char destination_class(const unsigned char *p)
{
    static const unsigned char broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    return !memcmp(p, broadcast, 6) ? 0 : p[0] & 1 ? 1 : 2;
}

/* The frame's destination class and source MAC. */
static void source_key(const unsigned char *p, unsigned char key[7])
{
    key[0] = destination_class(p);
    memcpy(key + 1, p + 6, 6);
}

/* The frame's bytes in `n` ranges, concatenated into `key` (of `len` bytes); their hash. */
static Py_hash_t fingerprint(const Py_ssize_t ranges[][2], int n, Py_ssize_t len, const unsigned char *p,
                             unsigned char *key)
{
    unsigned char *out = key;
    for (int i = 0; i < n; i++) {
        Py_ssize_t a = ranges[i][0], b = ranges[i][1];
        if (a < 0) {
            *out++ = destination_class(p);
            continue;
        }
        memcpy(out, p + a, b - a);
        out += b - a;
    }
    return _Py_HashBytes(key, len);
}

/* With tally: the index of the frame's source in `sources`, or -1 if not taught
 * since recount(). A fingerprint that tells its source remembers its index, so that
 * a swallowed frame costs one hash, not two. */
static Py_ssize_t frame_source(Sieve *self, Rule *rule, Py_ssize_t fp, const unsigned char *p)
{
    unsigned long long *cached = rule->quiet.values ? rule->quiet.values + fp : NULL;
    if (cached && *cached)
        return (Py_ssize_t)(*cached - 1);
    unsigned char key[7];
    source_key(p, key);
    Py_ssize_t source = keys_find(&self->sources, key, _Py_HashBytes(key, 7));
    if (cached && source >= 0)
        *cached = (unsigned long long)source + 1;
    return source;
}

static int sieve_new_sources(Sieve *self);

/* With tally: the index of the frame's source in `sources`, added if new; -1 with
 * an exception. Beyond the limit the sources start over (their counts handed out). */
static Py_ssize_t sieve_source(Sieve *self, const unsigned char *p)
{
    unsigned char key[7];
    source_key(p, key);
    Py_hash_t h = _Py_HashBytes(key, 7);
    Py_ssize_t source = keys_find(&self->sources, key, h);
    if (source >= 0)
        return source;
    if (self->sources.size >= self->limit && sieve_new_sources(self) < 0)
        return -1;
    return keys_add(&self->sources, key, h);
}

/* A quiet frame whose source was not taught since recount(): `first(t, frame)`
 * counts it as the counting probes count a frame, so that they place its source in
 * their tables in frame order, and returns whether they stayed quiet; if so the
 * source's later frames are tallied. The other probes found its fingerprint quiet
 * already: it runs no other Python. 1 swallowed, -1 with an exception. */
static int sieve_first(Sieve *self, Rule *rule, double t, const unsigned char *p, Py_ssize_t len)
{
    PyObject *quiet = PyObject_CallFunction(self->first, "dy#", t, (const char *)p, len);
    int taught = quiet ? PyObject_IsTrue(quiet) : -1;
    Py_XDECREF(quiet);
    if (taught < 0 || (taught && sieve_source(self, p) < 0))  /* the fingerprint learns it at its next frame */
        return -1;
    rule->frames++;
    rule->bytes += len;
    return 1;
}

/* Whether the frame at time t is one to swallow (1; it is counted), or not (0); -1
 * with an exception. */
static int sieve_quiet(Sieve *self, double t, const unsigned char *p, Py_ssize_t len)
{
    Rule *rule = sieve_rule_for(self, p, len);
    if (!rule || !rule->quiet.size)
        return 0;
    unsigned char key[MAX_KEY];
    Py_ssize_t fp = keys_find(&rule->quiet, key, fingerprint(rule->ranges, rule->nranges, rule->quiet.len, p, key));
    if (fp < 0)
        return 0;
    if (rule->napart) {
        unsigned char other[MAX_KEY];
        Py_hash_t h = fingerprint(rule->apart_ranges, rule->napart, rule->apart.len, p, other);
        if (keys_find(&rule->apart, other, h) < 0)
            return 0;
    }
    if (self->tallying) {
        Py_ssize_t source = frame_source(self, rule, fp, p);
        if (source < 0)
            return self->first ? sieve_first(self, rule, t, p, len) : 0;
        self->sources.values[source]++;
    }
    rule->frames++;
    rule->bytes += len;
    return 1;
}

/* The sieve's decision on a frame at time t: 1 swallowed (counted), 0 let through,
 * -1 with an exception. */
static int sieve_swallows(Sieve *self, double t, const unsigned char *p, Py_ssize_t len)
{
    int quiet = t < self->deadline ? sieve_quiet(self, t, p, len) : 0;
    if (quiet > 0 && t > self->last)
        self->last = t;
    return quiet;
}

/* The decision on an item from an iterator: only a (float, bytes) pair may be swallowed. */
static int sieve_swallows_item(Sieve *self, PyObject *item)
{
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2)
        return 0;
    PyObject *ts = PyTuple_GET_ITEM(item, 0), *frame = PyTuple_GET_ITEM(item, 1);
    if (!PyFloat_CheckExact(ts) || !PyBytes_CheckExact(frame))
        return 0;
    return sieve_swallows(self, PyFloat_AS_DOUBLE(ts), (const unsigned char *)PyBytes_AS_STRING(frame),
                          PyBytes_GET_SIZE(frame));
}

/* With tally: move the counts per source to `pending`, before the sources are
 * forgotten or handed out. */
static int sieve_drain(Sieve *self)
{
    Keys *sources = &self->sources;
    for (Py_ssize_t i = 0; self->tallying && i < sources->size; i++) {
        if (!sources->values[i])
            continue;
        PyObject *pair = Py_BuildValue("(y#K)", sources->keys + i * 7, (Py_ssize_t)7, sources->values[i]);
        if (!pair || PyList_Append(self->pending, pair) < 0) {
            Py_XDECREF(pair);
            return -1;
        }
        Py_DECREF(pair);
        sources->values[i] = 0;
    }
    return 0;
}

/* With tally: hand out the counts and start the sources over; the fingerprints'
 * sources are unknown again. */
static int sieve_new_sources(Sieve *self)
{
    if (sieve_drain(self) < 0)
        return -1;
    keys_free(&self->sources);
    for (Rule *rule = self->rules, *end = self->rules + self->nrules; rule < end; rule++)
        if (rule->quiet.values)
            memset(rule->quiet.values, 0, rule->quiet.size * sizeof *rule->quiet.values);
    return 0;
}

static PyObject *sieve_next(Sieve *self)
{
    while (self->source) {
        PyObject *item;
        if (self->step) {
            Raw f;
            int found = self->step(self->source, &f);
            if (found > 0 && !f.tagged) {
                int swallowed = sieve_swallows(self, f.ts, f.p, f.len);
                if (swallowed > 0)
                    continue;
                return swallowed < 0 ? NULL : raw_pair(&f);
            }
            item = found > 0 ? raw_pair(&f) : NULL;  /* a tag put back: judged as on the wire */
        } else {
            item = PyIter_Next(self->source);
        }
        if (!item)
            break;
        int swallowed = sieve_swallows_item(self, item);
        if (swallowed <= 0) {
            if (swallowed < 0)
                Py_CLEAR(item);
            return item;
        }
        Py_DECREF(item);
    }
    Py_CLEAR(self->source);
    return NULL;
}

static PyObject *sieve_over(Sieve *self, PyObject *frames)
{
    Step step = Py_IS_TYPE(frames, &RecordsType) ? records_step : Py_IS_TYPE(frames, &BlockType) ? block_step : NULL;
    PyObject *it = step ? Py_NewRef(frames) : PyObject_GetIter(frames);
    if (!it)
        return NULL;
    Py_XSETREF(self->source, it);
    self->step = step;
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *sieve_teach(Sieve *self, PyObject *frame)
{
    if (!PyBytes_CheckExact(frame))  /* over() lets such frames through anyway */
        Py_RETURN_TRUE;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(frame);
    Rule *rule = sieve_rule_for(self, p, PyBytes_GET_SIZE(frame));
    if (!rule)
        Py_RETURN_TRUE;
    if (rule->quiet.size >= self->limit || rule->apart.size >= self->limit) {
        int give_up = rule->frames - rule->frames_at_fill < (unsigned long long)self->limit;
        rule->frames_at_fill = rule->frames;
        keys_free(&rule->quiet);
        keys_free(&rule->apart);
        if (give_up) {
            rule->forgotten = 1;  /* fewer frames saved than fingerprints kept */
            Py_RETURN_FALSE;
        }
    }
    Py_ssize_t source = self->tallying ? sieve_source(self, p) : -1;
    if (self->tallying && source < 0)
        return NULL;
    unsigned char key[MAX_KEY];
    Py_hash_t h;
    if (rule->napart) {
        h = fingerprint(rule->apart_ranges, rule->napart, rule->apart.len, p, key);
        if (keys_find(&rule->apart, key, h) < 0 && keys_add(&rule->apart, key, h) < 0)
            return NULL;
    }
    h = fingerprint(rule->ranges, rule->nranges, rule->quiet.len, p, key);
    /* known already: taught again, a frame past the deadline */
    Py_ssize_t fp = keys_find(&rule->quiet, key, h);
    if (fp < 0 && (fp = keys_add(&rule->quiet, key, h)) < 0)
        return NULL;
    if (rule->quiet.values)
        rule->quiet.values[fp] = (unsigned long long)source + 1;
    Py_RETURN_TRUE;
}

static PyObject *sieve_forget(Sieve *self, PyObject *unused)
{
    for (int i = 0; i < self->nrules; i++) {
        Rule *r = &self->rules[i];
        keys_free(&r->quiet);  /* its memory too: a sieve forgotten often stays small */
        keys_free(&r->apart);
        r->frames_at_fill = r->frames;  /* the fill policy counts from here */
    }
    Py_RETURN_NONE;
}

static PyObject *sieve_recount(Sieve *self, PyObject *unused)
{
    if (sieve_new_sources(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *sieve_tallies(Sieve *self, PyObject *unused)
{
    if (!self->tallying)
        return PyList_New(0);
    if (sieve_drain(self) < 0)
        return NULL;
    PyObject *out = self->pending;
    self->pending = PyList_New(0);
    if (!self->pending) {
        self->pending = out;
        return NULL;
    }
    return out;
}

static PyObject *sieve_counts(Sieve *self, PyObject *unused)
{
    PyObject *out = PyDict_New();
    for (int i = 0; out && i < self->nrules; i++) {
        Rule *r = &self->rules[i];
        unsigned long long frames = 0, bytes = 0;
        for (int j = 0; j < self->nrules; j++)  /* the EtherType's rules together */
            if (self->rules[j].ether_type == r->ether_type)
                frames += self->rules[j].frames, bytes += self->rules[j].bytes;
        PyObject *key = PyLong_FromLong(r->ether_type);
        PyObject *value = Py_BuildValue("(KK)", frames, bytes);
        if (!key || !value || PyDict_SetItem(out, key, value) < 0)
            Py_CLEAR(out);
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    return out;
}

static PyObject *sieve_given_up(Sieve *self, PyObject *unused)
{
    PyObject *out = PyList_New(0);
    for (int i = 0; out && i < self->nrules; i++) {
        if (!self->rules[i].forgotten)
            continue;
        int index = 0;
        for (int j = 0; j < i; j++)
            index += self->rules[j].ether_type == self->rules[i].ether_type;
        PyObject *pair = Py_BuildValue("(ii)", self->rules[i].ether_type, index);
        if (!pair || PyList_Append(out, pair) < 0)
            Py_CLEAR(out);
        Py_XDECREF(pair);
    }
    return out;
}

static int sieve_traverse(Sieve *self, visitproc visit, void *arg)
{
    Py_VISIT(self->source);
    Py_VISIT(self->first);
    return 0;
}

static int sieve_clear(Sieve *self)
{
    for (int i = 0; i < self->nrules; i++) {
        keys_free(&self->rules[i].quiet);
        keys_free(&self->rules[i].apart);
    }
    self->nrules = 0;
    Py_CLEAR(self->source);
    Py_CLEAR(self->first);
    Py_CLEAR(self->pending);
    keys_free(&self->sources);
    return 0;
}

static void sieve_dealloc(Sieve *self)
{
    PyObject_GC_UnTrack(self);
    sieve_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef sieve_methods[] = {
    {"over", (PyCFunction)sieve_over, METH_O, "Iterate `frames`, swallowing the quiet ones."},
    {"teach", (PyCFunction)sieve_teach, METH_O,
     "Swallow frames alike to this one from now on; False: its EtherType was given up."},
    {"forget", (PyCFunction)sieve_forget, METH_NOARGS, "Drop every fingerprint taught so far."},
    {"counts", (PyCFunction)sieve_counts, METH_NOARGS, "{EtherType: (frames, bytes)} swallowed so far."},
    {"recount", (PyCFunction)sieve_recount, METH_NOARGS,
     "Swallow no frame of a source until one of its frames is taught again (with tally)."},
    {"given_up", (PyCFunction)sieve_given_up, METH_NOARGS,
     "[(EtherType, index of the rule among its EtherType's)] of the rules given up."},
    {"tallies", (PyCFunction)sieve_tallies, METH_NOARGS,
     "[(class and source MAC, frames swallowed)] since the last call (with tally)."},
    {NULL},
};

static PyMemberDef sieve_members[] = {
    {"deadline", T_DOUBLE, offsetof(Sieve, deadline), 0, "Frames from this time on always go through."},
    {"last", T_DOUBLE, offsetof(Sieve, last), READONLY, "The latest time of a swallowed frame."},
    {NULL},
};

static PyTypeObject SieveType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ixpect._frames.Sieve",
    .tp_basicsize = sizeof(Sieve),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Drops frames whose deciding bytes the probes already found quiet.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)sieve_init,
    .tp_dealloc = (destructor)sieve_dealloc,
    .tp_traverse = (traverseproc)sieve_traverse,
    .tp_clear = (inquiry)sieve_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)sieve_next,
    .tp_methods = sieve_methods,
    .tp_members = sieve_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ixpect._frames", "Per-frame loops in C: pcap records, ring blocks, the sieve.", -1,
};

PyMODINIT_FUNC PyInit__frames(void)
{
    if (PyType_Ready(&RecordsType) < 0 || PyType_Ready(&BlockType) < 0 || PyType_Ready(&SieveType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "Records", (PyObject *)&RecordsType) < 0 ||
        PyModule_AddObjectRef(m, "Block", (PyObject *)&BlockType) < 0 ||
        PyModule_AddObjectRef(m, "Sieve", (PyObject *)&SieveType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_RULES", MAX_RULES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
