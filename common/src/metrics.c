/* metrics.c - Prometheus metrics registry and text exposition format 0.0.4.
 *
 * Layout: a registry holds families (one per metric name, carrying HELP and
 * TYPE); a family holds series (one per label set). Each series is its own
 * heap block so the handle given to callers never moves when the arrays
 * grow. Values are C11 atomics so the hot path (add/set/observe) takes no
 * lock; the registry mutex only guards the family/series arrays, i.e.
 * registration and rendering. */
#include "crm/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"

const double CMN_METRICS_LATENCY_BUCKETS[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                              0.5,   1,     2.5,  5,     10,   30,  60};
const size_t CMN_METRICS_LATENCY_BUCKETS_N =
    sizeof(CMN_METRICS_LATENCY_BUCKETS) / sizeof(CMN_METRICS_LATENCY_BUCKETS[0]);

typedef enum metric_kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } metric_kind_t;

struct cmn_counter {
    _Atomic uint64_t value;
};

/* A double cannot be an atomic arithmetic type portably, so the gauge keeps
 * the bit pattern in a uint64 and adds with a compare-and-swap loop. */
struct cmn_gauge {
    _Atomic uint64_t bits;
};

/* buckets[i] counts observations in (bounds[i-1], bounds[i]] - not
 * cumulative - so observe touches one slot; buckets[nbounds] is +Inf.
 * _count is derived from the buckets at render time, which keeps it equal to
 * the +Inf bucket even while other threads observe. */
struct cmn_histogram {
    double *bounds;
    size_t nbounds;
    _Atomic uint64_t *buckets;
    _Atomic uint64_t sum_bits;
};

typedef struct series {
    char *labels; /* canonical label list without braces; "" when none */
    union {
        cmn_counter_t counter;
        cmn_gauge_t gauge;
        cmn_histogram_t histogram;
    } u;
} series_t;

typedef struct family {
    char *name;
    char *help;
    metric_kind_t kind;
    series_t **series;
    size_t nseries;
    size_t cap;
} family_t;

struct cmn_metrics {
    pthread_mutex_t lock;
    family_t **families;
    size_t nfamilies;
    size_t cap;
};

static uint64_t double_to_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bits_to_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* Adds v to an atomic double stored as bits. */
static void atomic_double_add(_Atomic uint64_t *bits, double v)
{
    uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
    for (;;) {
        uint64_t desired = double_to_bits(bits_to_double(old) + v);
        /* On failure old is refreshed with the current value, so the loop
         * retries with what another thread just stored. */
        if (atomic_compare_exchange_weak_explicit(bits, &old, desired, memory_order_relaxed,
                                                  memory_order_relaxed))
            return;
    }
}

static bool valid_metric_name(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        bool digit = c >= '0' && c <= '9';
        if (!alpha && !(digit && p != s))
            return false;
    }
    return true;
}

int cmn_metrics_escape_label_value(cmn_buf_t *out, const char *value)
{
    if (out == NULL || value == NULL)
        return CMN_ERR_INVALID;
    for (const char *p = value; *p != '\0'; p++) {
        int rc;
        if (*p == '\\')
            rc = cmn_buf_puts(out, "\\\\");
        else if (*p == '"')
            rc = cmn_buf_puts(out, "\\\"");
        else if (*p == '\n')
            rc = cmn_buf_puts(out, "\\n");
        else
            rc = cmn_buf_putc(out, *p);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Parses a caller's label list (name="value",... without braces) and writes
 * the canonical form into out: label names validated, values re-escaped so a
 * raw newline or a stray backslash cannot break the exposition. Accepts the
 * escapes \\ \" \n inside values and one trailing comma. */
static int canonical_labels(const char *labels, cmn_buf_t *out)
{
    int rc = 0;
    cmn_buf_t value = CMN_BUF_INIT;
    const char *p = labels;
    bool first = true;

    if (labels == NULL)
        goto cleanup;
    while (*p == ' ')
        p++;
    while (*p != '\0') {
        const char *name = p;
        size_t namelen;

        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_')) {
            rc = CMN_ERR_INVALID;
            goto cleanup;
        }
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
               (*p >= '0' && *p <= '9'))
            p++;
        namelen = (size_t)(p - name);
        /* "le" is reserved for histogram buckets; a caller label named le
         * would produce duplicate labels on the bucket lines. */
        if (namelen == 2 && strncmp(name, "le", 2) == 0) {
            rc = CMN_ERR_INVALID;
            goto cleanup;
        }
        if (p[0] != '=' || p[1] != '"') {
            rc = CMN_ERR_INVALID;
            goto cleanup;
        }
        p += 2;
        cmn_buf_reset(&value);
        while (*p != '"') {
            char c = *p;
            if (c == '\0') {
                rc = CMN_ERR_INVALID;
                goto cleanup;
            }
            if (c == '\\') {
                if (p[1] == '\\' || p[1] == '"')
                    c = p[1];
                else if (p[1] == 'n')
                    c = '\n';
                else {
                    rc = CMN_ERR_INVALID;
                    goto cleanup;
                }
                p++;
            }
            rc = cmn_buf_putc(&value, c);
            if (rc != 0)
                goto cleanup;
            p++;
        }
        p++; /* closing quote */
        if (!first) {
            rc = cmn_buf_putc(out, ',');
            if (rc != 0)
                goto cleanup;
        }
        first = false;
        rc = cmn_buf_append(out, name, namelen);
        if (rc == 0)
            rc = cmn_buf_puts(out, "=\"");
        if (rc == 0)
            rc = cmn_metrics_escape_label_value(out, value.data != NULL ? value.data : "");
        if (rc == 0)
            rc = cmn_buf_putc(out, '"');
        if (rc != 0)
            goto cleanup;
        while (*p == ' ')
            p++;
        if (*p == ',') {
            p++;
            while (*p == ' ')
                p++;
        } else if (*p != '\0') {
            rc = CMN_ERR_INVALID;
            goto cleanup;
        }
    }

cleanup:
    cmn_buf_free(&value);
    return rc;
}

cmn_metrics_t *cmn_metrics_new(void)
{
    cmn_metrics_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

static void series_free(series_t *s, metric_kind_t kind)
{
    if (s == NULL)
        return;
    if (kind == KIND_HISTOGRAM) {
        free(s->u.histogram.bounds);
        free((void *)s->u.histogram.buckets);
    }
    free(s->labels);
    free(s);
}

static void family_free(family_t *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->nseries; i++)
        series_free(f->series[i], f->kind);
    free(f->series);
    free(f->name);
    free(f->help);
    free(f);
}

void cmn_metrics_destroy(cmn_metrics_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfamilies; i++)
        family_free(m->families[i]);
    free(m->families);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* Caller holds m->lock. Returns the family of that name, creating it when
 * absent; NULL when the name exists with another type or memory runs out. */
static family_t *family_get(cmn_metrics_t *m, const char *name, const char *help,
                            metric_kind_t kind)
{
    family_t *f = NULL;

    for (size_t i = 0; i < m->nfamilies; i++) {
        if (strcmp(m->families[i]->name, name) == 0)
            return m->families[i]->kind == kind ? m->families[i] : NULL;
    }
    if (m->nfamilies == m->cap) {
        size_t ncap = m->cap == 0 ? 16 : m->cap * 2;
        family_t **nf = realloc(m->families, ncap * sizeof *nf);
        if (nf == NULL)
            return NULL;
        m->families = nf;
        m->cap = ncap;
    }
    f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    f->kind = kind;
    f->name = strdup(name);
    f->help = strdup(help != NULL ? help : "");
    if (f->name == NULL || f->help == NULL) {
        family_free(f);
        return NULL;
    }
    m->families[m->nfamilies++] = f;
    return f;
}

/* Finds or creates the series; histogram arguments are used only for a new
 * histogram series. Returns NULL on a bad name/labels, a type clash, a
 * histogram re-registered with other bounds, or out of memory. */
static series_t *register_series(cmn_metrics_t *m, const char *name, const char *help,
                                 const char *labels, metric_kind_t kind, const double *bounds,
                                 size_t nbounds)
{
    series_t *result = NULL;
    series_t *s = NULL;
    family_t *f = NULL;
    cmn_buf_t canon = CMN_BUF_INIT;
    bool locked = false;

    if (m == NULL || !valid_metric_name(name))
        goto cleanup;
    if (kind == KIND_HISTOGRAM) {
        if (nbounds > 0 && bounds == NULL)
            goto cleanup;
        for (size_t i = 0; i < nbounds; i++) {
            if (isnan(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                goto cleanup;
        }
    }
    if (canonical_labels(labels, &canon) != 0)
        goto cleanup;

    pthread_mutex_lock(&m->lock);
    locked = true;
    f = family_get(m, name, help, kind);
    if (f == NULL)
        goto cleanup;
    for (size_t i = 0; i < f->nseries; i++) {
        series_t *e = f->series[i];
        if (strcmp(e->labels, canon.data != NULL ? canon.data : "") != 0)
            continue;
        if (kind == KIND_HISTOGRAM &&
            (e->u.histogram.nbounds != nbounds ||
             (nbounds > 0 && memcmp(e->u.histogram.bounds, bounds, nbounds * sizeof *bounds) != 0)))
            goto cleanup;
        result = e;
        goto cleanup;
    }
    if (f->nseries == f->cap) {
        size_t ncap = f->cap == 0 ? 4 : f->cap * 2;
        series_t **ns = realloc(f->series, ncap * sizeof *ns);
        if (ns == NULL)
            goto cleanup;
        f->series = ns;
        f->cap = ncap;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL)
        goto cleanup;
    s->labels = cmn_buf_steal(&canon);
    if (s->labels == NULL)
        goto cleanup;
    if (kind == KIND_HISTOGRAM) {
        cmn_histogram_t *h = &s->u.histogram;
        h->nbounds = nbounds;
        h->bounds = malloc((nbounds > 0 ? nbounds : 1) * sizeof *h->bounds);
        h->buckets = calloc(nbounds + 1, sizeof *h->buckets);
        if (h->bounds == NULL || h->buckets == NULL)
            goto cleanup;
        if (nbounds > 0)
            memcpy(h->bounds, bounds, nbounds * sizeof *bounds);
        for (size_t i = 0; i <= nbounds; i++)
            atomic_init(&h->buckets[i], 0);
        atomic_init(&h->sum_bits, double_to_bits(0.0));
    } else if (kind == KIND_GAUGE) {
        atomic_init(&s->u.gauge.bits, double_to_bits(0.0));
    } else {
        atomic_init(&s->u.counter.value, 0);
    }
    f->series[f->nseries++] = s;
    result = s;
    s = NULL;

cleanup:
    if (locked)
        pthread_mutex_unlock(&m->lock);
    series_free(s, kind);
    cmn_buf_free(&canon);
    return result;
}

cmn_counter_t *cmn_metrics_counter(cmn_metrics_t *m, const char *name, const char *help,
                                   const char *labels)
{
    series_t *s = register_series(m, name, help, labels, KIND_COUNTER, NULL, 0);
    return s != NULL ? &s->u.counter : NULL;
}

cmn_gauge_t *cmn_metrics_gauge(cmn_metrics_t *m, const char *name, const char *help,
                               const char *labels)
{
    series_t *s = register_series(m, name, help, labels, KIND_GAUGE, NULL, 0);
    return s != NULL ? &s->u.gauge : NULL;
}

cmn_histogram_t *cmn_metrics_histogram(cmn_metrics_t *m, const char *name, const char *help,
                                       const char *labels, const double *bounds, size_t nbounds)
{
    series_t *s = register_series(m, name, help, labels, KIND_HISTOGRAM, bounds, nbounds);
    return s != NULL ? &s->u.histogram : NULL;
}

/* The update functions accept NULL (a failed registration) and do nothing,
 * so a metrics problem can never take a service down. */
void cmn_counter_add(cmn_counter_t *c, uint64_t v)
{
    if (c == NULL)
        return;
    atomic_fetch_add_explicit(&c->value, v, memory_order_relaxed);
}

void cmn_gauge_set(cmn_gauge_t *g, double v)
{
    if (g == NULL)
        return;
    atomic_store_explicit(&g->bits, double_to_bits(v), memory_order_relaxed);
}

void cmn_gauge_add(cmn_gauge_t *g, double v)
{
    if (g == NULL)
        return;
    atomic_double_add(&g->bits, v);
}

void cmn_histogram_observe(cmn_histogram_t *h, double v)
{
    size_t lo = 0;
    size_t hi;

    if (h == NULL)
        return;
    /* Binary search for the first bound >= v; NaN compares false everywhere
     * and lands in +Inf, matching the reference client. */
    hi = h->nbounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= h->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    if (isnan(v))
        lo = h->nbounds;
    atomic_fetch_add_explicit(&h->buckets[lo], 1, memory_order_relaxed);
    atomic_double_add(&h->sum_bits, v);
}

/* Formats a float the way Prometheus clients do: shortest text that reads
 * back to the same double, and NaN/+Inf/-Inf spelled out. */
static int put_double(cmn_buf_t *out, double v)
{
    char tmp[40];

    if (isnan(v))
        return cmn_buf_puts(out, "NaN");
    if (isinf(v))
        return cmn_buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    /* %g would switch integers such as 10 or 400000 to exponent form at
     * the shortest precision; integral values print exactly as integers. */
    if (fabs(v) < 1e17 && v == trunc(v))
        return cmn_buf_printf(out, "%.0f", v);
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    return cmn_buf_puts(out, tmp);
}

/* HELP text escapes backslash and newline (quotes stay as they are). */
static int put_help(cmn_buf_t *out, const char *help)
{
    for (const char *p = help; *p != '\0'; p++) {
        int rc;
        if (*p == '\\')
            rc = cmn_buf_puts(out, "\\\\");
        else if (*p == '\n')
            rc = cmn_buf_puts(out, "\\n");
        else
            rc = cmn_buf_putc(out, *p);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Writes name[suffix]{labels[,extra]} with braces only when a label exists. */
static int put_sample_name(cmn_buf_t *out, const char *name, const char *suffix,
                           const char *labels, const char *extra)
{
    int rc = cmn_buf_printf(out, "%s%s", name, suffix);
    bool has_labels = labels[0] != '\0';
    bool has_extra = extra != NULL && extra[0] != '\0';

    if (rc != 0 || (!has_labels && !has_extra))
        return rc;
    return cmn_buf_printf(out, "{%s%s%s}", labels, has_labels && has_extra ? "," : "",
                          has_extra ? extra : "");
}

static int render_histogram(cmn_buf_t *out, const char *name, const series_t *s)
{
    const cmn_histogram_t *h = &s->u.histogram;
    uint64_t cumulative = 0;
    int rc = 0;
    cmn_buf_t le = CMN_BUF_INIT;

    for (size_t i = 0; i <= h->nbounds; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        cmn_buf_reset(&le);
        rc = cmn_buf_puts(&le, "le=\"");
        if (rc == 0)
            rc = i < h->nbounds ? put_double(&le, h->bounds[i]) : cmn_buf_puts(&le, "+Inf");
        if (rc == 0)
            rc = cmn_buf_putc(&le, '"');
        if (rc == 0)
            rc = put_sample_name(out, name, "_bucket", s->labels, le.data);
        if (rc == 0)
            rc = cmn_buf_printf(out, " %llu\n", (unsigned long long)cumulative);
        if (rc != 0)
            goto cleanup;
    }
    rc = put_sample_name(out, name, "_sum", s->labels, NULL);
    if (rc == 0)
        rc = cmn_buf_putc(out, ' ');
    if (rc == 0)
        rc = put_double(out, bits_to_double(atomic_load_explicit(&h->sum_bits, memory_order_relaxed)));
    if (rc == 0)
        rc = cmn_buf_putc(out, '\n');
    if (rc == 0)
        rc = put_sample_name(out, name, "_count", s->labels, NULL);
    if (rc == 0)
        rc = cmn_buf_printf(out, " %llu\n", (unsigned long long)cumulative);

cleanup:
    cmn_buf_free(&le);
    return rc;
}

static int render_family(cmn_buf_t *out, const family_t *f)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    int rc = cmn_buf_printf(out, "# HELP %s ", f->name);

    if (rc == 0)
        rc = put_help(out, f->help);
    if (rc == 0)
        rc = cmn_buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->kind]);
    for (size_t i = 0; rc == 0 && i < f->nseries; i++) {
        const series_t *s = f->series[i];
        if (f->kind == KIND_HISTOGRAM) {
            rc = render_histogram(out, f->name, s);
            continue;
        }
        rc = put_sample_name(out, f->name, "", s->labels, NULL);
        if (rc != 0)
            break;
        if (f->kind == KIND_COUNTER)
            rc = cmn_buf_printf(out, " %llu\n",
                                (unsigned long long)atomic_load_explicit(&s->u.counter.value,
                                                                         memory_order_relaxed));
        else {
            rc = cmn_buf_putc(out, ' ');
            if (rc == 0)
                rc = put_double(out, bits_to_double(atomic_load_explicit(&s->u.gauge.bits,
                                                                         memory_order_relaxed)));
            if (rc == 0)
                rc = cmn_buf_putc(out, '\n');
        }
    }
    return rc;
}

int cmn_metrics_render(cmn_metrics_t *m, cmn_buf_t *out)
{
    int rc = 0;

    if (m == NULL || out == NULL)
        return CMN_ERR_INVALID;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nfamilies; i++) {
        rc = render_family(out, m->families[i]);
        if (rc != 0)
            break;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}
