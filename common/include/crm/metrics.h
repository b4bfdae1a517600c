/* metrics.h - Prometheus metrics, text exposition format 0.0.4.
 *
 * A registry owns its metrics; handles returned by the registration
 * functions stay valid until cmn_metrics_destroy(). Updates are lock-free
 * (atomics) and safe from any thread; registration takes a lock. Registering
 * the same name and labels twice returns the existing handle. */
#ifndef CRM_METRICS_H
#define CRM_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"

typedef struct cmn_metrics cmn_metrics_t;
typedef struct cmn_counter cmn_counter_t;
typedef struct cmn_gauge cmn_gauge_t;
typedef struct cmn_histogram cmn_histogram_t;

cmn_metrics_t *cmn_metrics_new(void);
void cmn_metrics_destroy(cmn_metrics_t *m);

/* labels is NULL or a Prometheus label list without braces: channel="email",status="sent" */
cmn_counter_t *cmn_metrics_counter(cmn_metrics_t *m, const char *name, const char *help, const char *labels);
cmn_gauge_t *cmn_metrics_gauge(cmn_metrics_t *m, const char *name, const char *help, const char *labels);
/* bounds: ascending upper bounds (seconds for latencies); +Inf is implicit. */
cmn_histogram_t *cmn_metrics_histogram(cmn_metrics_t *m, const char *name, const char *help,
                                       const char *labels, const double *bounds, size_t nbounds);

void cmn_counter_add(cmn_counter_t *c, uint64_t v);
void cmn_gauge_set(cmn_gauge_t *g, double v);
void cmn_gauge_add(cmn_gauge_t *g, double v);
void cmn_histogram_observe(cmn_histogram_t *h, double v);

/* Appends value escaped for use inside a label's double quotes (backslash,
 * quote and newline), for callers building a labels string from data they do
 * not control. Returns 0 or a cmn_err_t. */
int cmn_metrics_escape_label_value(cmn_buf_t *out, const char *value);

/* Appends the whole registry in text format (# HELP, # TYPE, samples). */
int cmn_metrics_render(cmn_metrics_t *m, cmn_buf_t *out);

/* Default latency buckets in seconds (0.001 .. 60). */
extern const double CMN_METRICS_LATENCY_BUCKETS[];
extern const size_t CMN_METRICS_LATENCY_BUCKETS_N;

#endif
