/* log.h - JSON-lines logging.
 *
 * Each line is one JSON object: {"ts":"2026-11-22T01:02:03.456Z","level":"info",
 * "service":"router","msg":"...","communication_id":"..."} plus optional fields.
 * A cmn_log_t is set up once in main and kept in the service context; it is
 * read-only afterwards, so logging from any thread is safe (one fprintf per line). */
#ifndef CRM_LOG_H
#define CRM_LOG_H

#include <stdio.h>

typedef enum cmn_log_level {
    CMN_LOG_DEBUG = 0,
    CMN_LOG_INFO = 1,
    CMN_LOG_WARN = 2,
    CMN_LOG_ERROR = 3
} cmn_log_level_t;

typedef struct cmn_log {
    const char *service;     /* borrowed, must outlive the logger */
    cmn_log_level_t level;   /* lines below this level are dropped */
    FILE *out;               /* stderr unless a test redirects it */
} cmn_log_t;

/* Fills log. level_name is "debug", "info", "warn" or "error"; returns
 * CMN_ERR_INVALID for anything else (log is still usable at info). */
int cmn_log_init(cmn_log_t *log, const char *service, const char *level_name);

/* communication_id may be NULL. msg is printf-formatted and JSON-escaped. */
void cmn_logf(const cmn_log_t *log, cmn_log_level_t level, const char *communication_id,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Same, with extra string fields: kv is a NULL-terminated list of key, value
 * pairs, e.g. (const char *[]){"topic", "crm.dlq", NULL}. */
void cmn_logkv(const cmn_log_t *log, cmn_log_level_t level, const char *communication_id,
               const char *const *kv, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define cmn_log_debug(l, id, ...) cmn_logf((l), CMN_LOG_DEBUG, (id), __VA_ARGS__)
#define cmn_log_info(l, id, ...) cmn_logf((l), CMN_LOG_INFO, (id), __VA_ARGS__)
#define cmn_log_warn(l, id, ...) cmn_logf((l), CMN_LOG_WARN, (id), __VA_ARGS__)
#define cmn_log_error(l, id, ...) cmn_logf((l), CMN_LOG_ERROR, (id), __VA_ARGS__)

#endif
