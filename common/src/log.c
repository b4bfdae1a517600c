/* log.c - JSON-lines logging.
 *
 * A line is built completely in memory and written with a single fprintf()
 * followed by fflush(). POSIX stdio locks the FILE for each call, so lines
 * from different threads never interleave, and flushing at once means a
 * crashing process still leaves every line it logged. */
#include "crm/log.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/time.h"

static const char *const level_names[] = {
    [CMN_LOG_DEBUG] = "debug",
    [CMN_LOG_INFO] = "info",
    [CMN_LOG_WARN] = "warn",
    [CMN_LOG_ERROR] = "error",
};

#define LEVEL_COUNT (sizeof level_names / sizeof level_names[0])

/* The fixed fields of every line; extra key/value pairs must not repeat them,
 * because duplicate keys make a JSON object ambiguous to log processors. */
static const char *const reserved_keys[] = {"ts", "level", "service", "msg", "communication_id"};

int cmn_log_init(cmn_log_t *log, const char *service, const char *level_name)
{
    if (log == NULL) {
        return CMN_ERR_INVALID;
    }
    log->service = service != NULL ? service : "unknown";
    log->level = CMN_LOG_INFO;
    log->out = stderr;
    if (level_name == NULL) {
        return CMN_ERR_INVALID;
    }
    /* Case-insensitive, since operators commonly write LOG_LEVEL=INFO. */
    for (size_t i = 0; i < LEVEL_COUNT; i++) {
        if (strcasecmp(level_name, level_names[i]) == 0) {
            log->level = (cmn_log_level_t)i;
            return CMN_OK;
        }
    }
    return CMN_ERR_INVALID;
}

static int is_reserved(const char *key)
{
    for (size_t i = 0; i < sizeof reserved_keys / sizeof reserved_keys[0]; i++) {
        if (strcmp(key, reserved_keys[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Appends `,"key":"value"` (or null for a NULL value). */
static int put_field(cmn_buf_t *line, const char *key, const char *value)
{
    int rc = cmn_buf_putc(line, ',');
    rc = rc != CMN_OK ? rc : cmn_buf_put_json_string(line, key);
    rc = rc != CMN_OK ? rc : cmn_buf_putc(line, ':');
    if (rc == CMN_OK) {
        rc = value != NULL ? cmn_buf_put_json_string(line, value) : cmn_buf_puts(line, "null");
    }
    return rc;
}

static void log_vwrite(const cmn_log_t *log, cmn_log_level_t level, const char *communication_id,
                       const char *const *kv, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

static void log_vwrite(const cmn_log_t *log, cmn_log_level_t level, const char *communication_id,
                       const char *const *kv, const char *fmt, va_list ap)
{
    if (log == NULL || (int)level < (int)log->level) {
        return;
    }
    FILE *out = log->out != NULL ? log->out : stderr;
    const char *level_name =
        (int)level >= 0 && (size_t)level < LEVEL_COUNT ? level_names[level] : "error";
    cmn_buf_t msg = CMN_BUF_INIT;
    cmn_buf_t line = CMN_BUF_INIT;
    char ts[40];

    if (cmn_time_format_rfc3339(cmn_now_ms(), ts, sizeof ts) != CMN_OK) {
        strcpy(ts, "1970-01-01T00:00:00.000Z");
    }
    int rc = fmt != NULL ? cmn_buf_vprintf(&msg, fmt, ap) : CMN_OK;
    rc = rc != CMN_OK ? rc : cmn_buf_puts(&line, "{\"ts\":");
    rc = rc != CMN_OK ? rc : cmn_buf_put_json_string(&line, ts);
    rc = rc != CMN_OK ? rc : cmn_buf_puts(&line, ",\"level\":");
    rc = rc != CMN_OK ? rc : cmn_buf_put_json_string(&line, level_name);
    rc = rc != CMN_OK ? rc : put_field(&line, "service", log->service != NULL ? log->service : "unknown");
    rc = rc != CMN_OK ? rc : put_field(&line, "msg", msg.data != NULL ? msg.data : "");
    if (rc == CMN_OK && communication_id != NULL) {
        rc = put_field(&line, "communication_id", communication_id);
    }
    /* kv ends at the first NULL key. A NULL value ends it too (the list
     * cannot be read past it), after recording the key with a null value. */
    for (size_t i = 0; rc == CMN_OK && kv != NULL && kv[i] != NULL; i += 2) {
        if (!is_reserved(kv[i])) {
            rc = put_field(&line, kv[i], kv[i + 1]);
        }
        if (kv[i + 1] == NULL) {
            break;
        }
    }
    rc = rc != CMN_OK ? rc : cmn_buf_puts(&line, "}\n");

    if (rc == CMN_OK) {
        fprintf(out, "%s", line.data);
    } else {
        /* Out of memory: still say that a line was lost, without any of the
         * caller's data (which we could not escape). */
        fprintf(out, "{\"ts\":\"%s\",\"level\":\"error\",\"msg\":\"log line dropped: %s\"}\n", ts,
                cmn_strerror(rc));
    }
    fflush(out);
    cmn_buf_free(&msg);
    cmn_buf_free(&line);
}

void cmn_logf(const cmn_log_t *log, cmn_log_level_t level, const char *communication_id,
              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(log, level, communication_id, NULL, fmt, ap);
    va_end(ap);
}

void cmn_logkv(const cmn_log_t *log, cmn_log_level_t level, const char *communication_id,
               const char *const *kv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(log, level, communication_id, kv, fmt, ap);
    va_end(ap);
}
