/* The two loops of the per-frame path that run once per frame before any probe
 * does: walking the records of a pcap file, and the sieve that drops frames the
 * probes have already judged.
 *
 * Records(data, offset, big_endian, scale, name, error)
 *     Iterator of (timestamp, frame bytes) over the classic pcap records of `data`
 *     (a buffer: the mapped file) from `offset`, the file header already checked
 *     by ixpect.pcap. A damaged record raises `error` after the frames before it.
 *
 * Sieve(spec)
 *     spec: {EtherType: (min_len, ((start, end), ...), quiet_set)}. over(frames)
 *     iterates the (timestamp, frame) pairs of `frames` but swallows each untagged
 *     frame of a listed EtherType, at least min_len long, whose bytes in the ranges
 *     (concatenated in order) are in quiet_set: the engine put them there after
 *     every probe let such a frame pass silently, and the probes declared that
 *     these bytes decide their verdict (ixpect.engine). A frame at or after
 *     `deadline` always goes through, so that timers run. Swallowed frames are
 *     counted per EtherType (counts()); `last` is the latest time of one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

#define MAX_FRAME 262144
#define MAX_KEY 256
#define MAX_RANGES 16
#define MAX_TYPES 16

/* -- Records ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int held;
    Py_ssize_t off;
    int big;
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
    if (!PyArg_ParseTuple(args, "OnpdUO", &data, &self->off, &self->big, &self->scale, &name, &error))
        return -1;
    records_release(self);
    if (PyObject_GetBuffer(data, &self->view, PyBUF_SIMPLE) < 0)
        return -1;
    self->held = 1;
    Py_XSETREF(self->name, Py_NewRef(name));
    Py_XSETREF(self->error, Py_NewRef(error));
    return 0;
}

static PyObject *records_next(Records *self)
{
    if (!self->held)
        return NULL;
    const unsigned char *data = self->view.buf;
    Py_ssize_t n = self->view.len, off = self->off;
    if (off + 16 > n) {
        if (off != n)
            PyErr_Format(self->error, "%U: truncated record header at offset %zd", self->name, off);
        records_release(self);
        return NULL;
    }
    unsigned long sec = rd32(data + off, self->big), frac = rd32(data + off + 4, self->big);
    unsigned long incl = rd32(data + off + 8, self->big);
    if (incl > MAX_FRAME || off + 16 + (Py_ssize_t)incl > n) {
        PyErr_Format(self->error, "%U: truncated or corrupt record at offset %zd", self->name, off);
        records_release(self);
        return NULL;
    }
    self->off = off + 16 + incl;
    PyObject *ts = PyFloat_FromDouble((double)sec + (double)frac * self->scale);
    PyObject *frame = PyBytes_FromStringAndSize((const char *)data + off + 16, incl);
    if (!ts || !frame) {
        Py_XDECREF(ts);
        Py_XDECREF(frame);
        return NULL;
    }
    PyObject *pair = PyTuple_New(2);
    if (!pair) {
        Py_DECREF(ts);
        Py_DECREF(frame);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, ts);
    PyTuple_SET_ITEM(pair, 1, frame);
    return pair;
}

static void records_dealloc(Records *self)
{
    records_release(self);
    Py_XDECREF(self->name);
    Py_XDECREF(self->error);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

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
};

/* -- Sieve -------------------------------------------------------------------- */

typedef struct {
    int ether_type;
    Py_ssize_t min_len;
    int nranges;
    Py_ssize_t ranges[MAX_RANGES][2];
    PyObject *quiet;
    unsigned long long frames, bytes;
} Rule;

typedef struct {
    PyObject_HEAD
    Rule rules[MAX_TYPES];
    int nrules;
    PyObject *source;
    double deadline, last;
} Sieve;

static int sieve_rule(Rule *rule, PyObject *et, PyObject *value)
{
    PyObject *ranges;
    rule->ether_type = (int)PyLong_AsLong(et);
    if (!PyArg_ParseTuple(value, "nO!O!", &rule->min_len, &PyTuple_Type, &ranges, &PySet_Type, &rule->quiet))
        return -1;
    Py_ssize_t nr = PyTuple_GET_SIZE(ranges), key = 0;
    if (nr > MAX_RANGES) {
        PyErr_SetString(PyExc_ValueError, "too many ranges");
        return -1;
    }
    for (Py_ssize_t i = 0; i < nr; i++) {
        Py_ssize_t a, b;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(ranges, i), "nn", &a, &b))
            return -1;
        if (a < 0 || b < a || b > rule->min_len || (key += b - a) > MAX_KEY) {
            PyErr_Format(PyExc_ValueError, "range (%zd, %zd) outside the key or the minimum length", a, b);
            return -1;
        }
        rule->ranges[i][0] = a;
        rule->ranges[i][1] = b;
    }
    rule->nranges = (int)nr;
    Py_INCREF(rule->quiet);
    return 0;
}

static int sieve_init(Sieve *self, PyObject *args, PyObject *kwds)
{
    PyObject *spec, *et, *value;
    Py_ssize_t pos = 0;
    if (!PyArg_ParseTuple(args, "O!", &PyDict_Type, &spec))
        return -1;
    if (self->nrules || PyDict_GET_SIZE(spec) > MAX_TYPES) {
        PyErr_SetString(PyExc_ValueError, "a Sieve takes one spec of at most 16 EtherTypes");
        return -1;
    }
    while (PyDict_Next(spec, &pos, &et, &value)) {
        if (sieve_rule(&self->rules[self->nrules], et, value) < 0)
            return -1;
        self->nrules++;
    }
    self->deadline = Py_HUGE_VAL;
    self->last = -Py_HUGE_VAL;
    return 0;
}

/* Whether the frame is one to swallow (and count). */
static int sieve_quiet(Sieve *self, PyObject *frame)
{
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(frame);
    Py_ssize_t len = PyBytes_GET_SIZE(frame);
    if (len < 14)
        return 0;
    int et = p[12] << 8 | p[13];
    Rule *rule = self->rules, *end = self->rules + self->nrules;
    while (rule < end && rule->ether_type != et)
        rule++;
    if (rule == end || len < rule->min_len)
        return 0;
    char key[MAX_KEY];
    Py_ssize_t k = 0;
    for (int i = 0; i < rule->nranges; i++) {
        Py_ssize_t a = rule->ranges[i][0], b = rule->ranges[i][1];
        memcpy(key + k, p + a, b - a);
        k += b - a;
    }
    PyObject *fp = PyBytes_FromStringAndSize(key, k);
    if (!fp)
        return -1;
    int found = PySet_Contains(rule->quiet, fp);
    Py_DECREF(fp);
    if (found == 1) {
        rule->frames++;
        rule->bytes += len;
    }
    return found;
}

static PyObject *sieve_next(Sieve *self)
{
    PyObject *item;
    if (!self->source)
        return NULL;
    while ((item = PyIter_Next(self->source))) {
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2)
            return item;
        PyObject *ts = PyTuple_GET_ITEM(item, 0), *frame = PyTuple_GET_ITEM(item, 1);
        if (!PyFloat_CheckExact(ts) || !PyBytes_CheckExact(frame))
            return item;
        double t = PyFloat_AS_DOUBLE(ts);
        if (t >= self->deadline)
            return item;
        int quiet = sieve_quiet(self, frame);
        if (quiet != 1) {
            if (quiet < 0) {
                Py_DECREF(item);
                return NULL;
            }
            return item;
        }
        if (t > self->last)
            self->last = t;
        Py_DECREF(item);
    }
    Py_CLEAR(self->source);
    return NULL;
}

static PyObject *sieve_over(Sieve *self, PyObject *frames)
{
    PyObject *it = PyObject_GetIter(frames);
    if (!it)
        return NULL;
    Py_XSETREF(self->source, it);
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *sieve_counts(Sieve *self, PyObject *unused)
{
    PyObject *out = PyDict_New();
    for (int i = 0; out && i < self->nrules; i++) {
        Rule *r = &self->rules[i];
        PyObject *key = PyLong_FromLong(r->ether_type);
        PyObject *value = Py_BuildValue("(KK)", r->frames, r->bytes);
        if (!key || !value || PyDict_SetItem(out, key, value) < 0)
            Py_CLEAR(out);
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    return out;
}

static int sieve_traverse(Sieve *self, visitproc visit, void *arg)
{
    for (int i = 0; i < self->nrules; i++)
        Py_VISIT(self->rules[i].quiet);
    Py_VISIT(self->source);
    return 0;
}

static int sieve_clear(Sieve *self)
{
    for (int i = 0; i < self->nrules; i++)
        Py_CLEAR(self->rules[i].quiet);
    self->nrules = 0;
    Py_CLEAR(self->source);
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
    {"counts", (PyCFunction)sieve_counts, METH_NOARGS, "{EtherType: (frames, bytes)} swallowed so far."},
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
    PyModuleDef_HEAD_INIT, "ixpect._frames", "Per-frame loops in C: pcap records and the sieve.", -1, NULL,
};

PyMODINIT_FUNC PyInit__frames(void)
{
    if (PyType_Ready(&RecordsType) < 0 || PyType_Ready(&SieveType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "Records", (PyObject *)&RecordsType) < 0 ||
        PyModule_AddObjectRef(m, "Sieve", (PyObject *)&SieveType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
