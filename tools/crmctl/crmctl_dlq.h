/* crmctl_dlq.h - `crmctl dlq list | replay`: inspect and re-inject dead letters.
 *
 * The I/O (a temporary consumer on crm.dlq, an idempotent producer for the
 * replay) lives in crmctl_dlq.c; this header exposes its pure parts so they
 * are unit-tested: argument parsing, the filter, the replay target check,
 * the communication_id lookup and the "replayed marks".
 *
 * Replayed marks: the consumer group CRMCTL_DLQ_GROUP commits, per crm.dlq
 * partition, an offset below which every dead letter has been replayed, and
 * in the commit's metadata the ranges above it that were replayed too (a
 * filtered replay leaves gaps). A later replay skips what the marks cover
 * unless --all is given, so the same dead letter is not replayed twice by
 * accident. docs/operations.md explains the decision. */
#ifndef CRMCTL_DLQ_H
#define CRMCTL_DLQ_H

#include <stddef.h>
#include <stdint.h>

#define CRMCTL_DLQ_GROUP "crmctl-dlq-replay"
/* Kafka brokers refuse commit metadata longer than offset.metadata.max.bytes
 * (4096 by default); staying well below leaves room for the prefix. */
#define CRMCTL_DLQ_MARKS_MAX 3000

typedef struct crmctl_dlq_filter {
    int64_t since_ms;         /* 0: from the beginning of crm.dlq */
    const char *reason;       /* case-insensitive substring of x-crm-dlq-reason, or NULL */
    const char *source_topic; /* exact x-crm-dlq-source-topic, or NULL */
} crmctl_dlq_filter_t;

typedef struct crmctl_dlq_opts {
    int replay;               /* 0: list, 1: replay */
    crmctl_dlq_filter_t filter;
    long limit;               /* list only; 0: no limit */
    int json;                 /* list only: one JSON object per line */
    int show_value;           /* list only: print the value (personal data) */
    int dry_run;              /* replay only: print, produce and commit nothing */
    int all;                  /* replay only: ignore the replayed marks */
} crmctl_dlq_opts_t;

/* Parses `dlq list|replay [flags]` (argv[0] is "dlq"). now_ms anchors a
 * --since duration. Strings in o point into argv. Returns 0, or
 * CMN_ERR_INVALID with err naming the flag. */
int crmctl_dlq_parse_args(int argc, char **argv, int64_t now_ms, crmctl_dlq_opts_t *o, char *err, size_t errlen);

/* --since: an RFC 3339 time, or a duration back from now_ms made of
 * <digits><unit> parts, units s, m, h, d (e.g. "90s", "2h", "1d12h").
 * Returns 0 or CMN_ERR_INVALID. */
int crmctl_dlq_parse_since(const char *s, int64_t now_ms, int64_t *out_ms);

/* 1 when a dead letter with these headers (not NUL-terminated; NULL when
 * absent) and timestamp passes f. */
int crmctl_dlq_matches(const crmctl_dlq_filter_t *f, const char *reason, size_t reason_len, const char *source_topic,
                       size_t source_topic_len, int64_t timestamp_ms);

/* 1 when topic (not NUL-terminated) may receive a replay: an engine topic
 * of cmn_kafka_topics() other than crm.dlq itself. */
int crmctl_dlq_target_ok(const char *topic, size_t len);

/* The top-level "communication_id" string of a JSON value into out, or ""
 * when the value is not a JSON object or has none. */
void crmctl_dlq_communication_id(const char *value, size_t len, char *out, size_t outlen);

/* ------------------------------------------------------- replayed marks */

typedef struct crmctl_dlq_range {
    int64_t lo, hi; /* inclusive */
} crmctl_dlq_range_t;

typedef struct crmctl_dlq_marks {
    int64_t next;              /* every offset below is replayed */
    crmctl_dlq_range_t *ranges; /* sorted, disjoint, not touching, all above next */
    size_t n, cap;
} crmctl_dlq_marks_t;

/* Loads the marks of one partition from its committed offset (negative:
 * none) and commit metadata (NULL or not ours: no ranges). Offsets below
 * log_start no longer exist and count as handled. Returns 0, CMN_ERR_NOMEM. */
int crmctl_dlq_marks_load(crmctl_dlq_marks_t *m, int64_t committed, const char *metadata, size_t metadata_len,
                          int64_t log_start);
int crmctl_dlq_marks_contains(const crmctl_dlq_marks_t *m, int64_t offset);
/* Marks offset replayed, merging ranges and advancing next. 0 or CMN_ERR_NOMEM. */
int crmctl_dlq_marks_add(crmctl_dlq_marks_t *m, int64_t offset);
/* The commit metadata for m into out. CMN_ERR_OVERFLOW when it would be
 * longer than CRMCTL_DLQ_MARKS_MAX or outlen. */
int crmctl_dlq_marks_format(const crmctl_dlq_marks_t *m, char *out, size_t outlen);
int crmctl_dlq_marks_copy(crmctl_dlq_marks_t *dst, const crmctl_dlq_marks_t *src);
void crmctl_dlq_marks_free(crmctl_dlq_marks_t *m);

#endif
