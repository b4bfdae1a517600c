/* Unit tests for crm/log.h: every line must be one valid JSON object. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/log.h"
#include "crm/time.h"

/* A logger writing into memory, so lines can be read back and parsed. */
typedef struct capture {
    cmn_log_t log;
    FILE *out;
    char *data;
    size_t size;
} capture_t;

static void capture_open(capture_t *c, const char *level)
{
    memset(c, 0, sizeof *c);
    c->out = open_memstream(&c->data, &c->size);
    cr_assert_not_null(c->out);
    cr_assert_eq(cmn_log_init(&c->log, "router", level), CMN_OK);
    c->log.out = c->out;
}

static void capture_close(capture_t *c)
{
    fclose(c->out);
    free(c->data);
}

/* Returns the number of lines written so far. */
static size_t line_count(capture_t *c)
{
    fflush(c->out);
    size_t n = 0;
    for (size_t i = 0; i < c->size; i++) {
        n += c->data[i] == '\n';
    }
    return n;
}

/* Parses line `index` (0-based) as JSON; the caller puts the result. */
static json_object *parse_line(capture_t *c, size_t index)
{
    fflush(c->out);
    const char *p = c->data;
    for (size_t i = 0; i < index; i++) {
        p = strchr(p, '\n');
        cr_assert_not_null(p);
        p++;
    }
    const char *nl = strchr(p, '\n');
    cr_assert_not_null(nl, "every line ends with a newline");
    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *obj = json_tokener_parse_ex(tok, p, (int)(nl - p));
    cr_assert_not_null(obj, "line is not JSON: %.*s", (int)(nl - p), p);
    cr_assert_eq((size_t)json_tokener_get_parse_end(tok), (size_t)(nl - p));
    json_tokener_free(tok);
    cr_assert(json_object_is_type(obj, json_type_object));
    return obj;
}

static const char *field(json_object *obj, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string)) {
        return NULL;
    }
    return json_object_get_string(v);
}

Test(log, init_levels)
{
    cmn_log_t log;
    cr_assert_eq(cmn_log_init(&log, "svc", "debug"), CMN_OK);
    cr_assert_eq(log.level, CMN_LOG_DEBUG);
    cr_assert_eq(log.out, stderr);
    cr_assert_str_eq(log.service, "svc");
    cr_assert_eq(cmn_log_init(&log, "svc", "warn"), CMN_OK);
    cr_assert_eq(log.level, CMN_LOG_WARN);
    cr_assert_eq(cmn_log_init(&log, "svc", "error"), CMN_OK);
    cr_assert_eq(log.level, CMN_LOG_ERROR);
    cr_assert_eq(cmn_log_init(&log, "svc", "INFO"), CMN_OK);
    cr_assert_eq(log.level, CMN_LOG_INFO);
}

Test(log, init_rejects_unknown_level_but_stays_usable)
{
    cmn_log_t log;
    cr_assert_eq(cmn_log_init(&log, "svc", "verbose"), CMN_ERR_INVALID);
    cr_assert_eq(log.level, CMN_LOG_INFO);
    cr_assert_eq(log.out, stderr);
    cr_assert_eq(cmn_log_init(&log, "svc", NULL), CMN_ERR_INVALID);
    cr_assert_eq(log.level, CMN_LOG_INFO);
    cr_assert_eq(cmn_log_init(&log, "svc", ""), CMN_ERR_INVALID);
    cr_assert_eq(cmn_log_init(NULL, "svc", "info"), CMN_ERR_INVALID);
}

Test(log, line_has_all_fields)
{
    capture_t c;
    capture_open(&c, "info");
    int64_t before = cmn_now_ms();
    cmn_log_info(&c.log, "6f1c3f0e-5b7a-4d0e-9a51-2c8e7d4b1a01", "routed to %s after %d ms", "email", 12);
    int64_t after = cmn_now_ms();
    cr_assert_eq(line_count(&c), 1);
    json_object *obj = parse_line(&c, 0);
    cr_assert_str_eq(field(obj, "level"), "info");
    cr_assert_str_eq(field(obj, "service"), "router");
    cr_assert_str_eq(field(obj, "msg"), "routed to email after 12 ms");
    cr_assert_str_eq(field(obj, "communication_id"), "6f1c3f0e-5b7a-4d0e-9a51-2c8e7d4b1a01");

    /* ts is RFC 3339 UTC with milliseconds, and the time of the call. */
    const char *ts = field(obj, "ts");
    cr_assert_not_null(ts);
    cr_assert_eq(strlen(ts), 24, "ts %s", ts);
    cr_assert_eq(ts[10], 'T');
    cr_assert_eq(ts[19], '.');
    cr_assert_eq(ts[23], 'Z');
    int64_t when = 0;
    cr_assert_eq(cmn_time_parse_rfc3339(ts, &when), CMN_OK);
    cr_assert_geq(when, before);
    cr_assert_leq(when, after);
    /* The fixed fields come first, in a stable order. */
    cr_assert_eq(strncmp(c.data, "{\"ts\":", 6), 0);
    json_object_put(obj);
    capture_close(&c);
}

Test(log, null_communication_id_is_omitted)
{
    capture_t c;
    capture_open(&c, "info");
    cmn_log_warn(&c.log, NULL, "no id here");
    json_object *obj = parse_line(&c, 0);
    cr_assert_str_eq(field(obj, "level"), "warn");
    cr_assert_not(json_object_object_get_ex(obj, "communication_id", NULL));
    cr_assert_eq(json_object_object_length(obj), 4);
    json_object_put(obj);
    capture_close(&c);
}

Test(log, level_filtering)
{
    capture_t c;
    capture_open(&c, "warn");
    cmn_log_debug(&c.log, NULL, "dropped");
    cmn_log_info(&c.log, NULL, "dropped");
    cr_assert_eq(line_count(&c), 0);
    cmn_log_warn(&c.log, NULL, "kept");
    cmn_log_error(&c.log, NULL, "kept too");
    cr_assert_eq(line_count(&c), 2);
    json_object *obj = parse_line(&c, 1);
    cr_assert_str_eq(field(obj, "level"), "error");
    cr_assert_str_eq(field(obj, "msg"), "kept too");
    json_object_put(obj);
    capture_close(&c);
}

Test(log, hostile_message_is_escaped)
{
    capture_t c;
    capture_open(&c, "debug");
    const char *evil = "line1\nline2 \"quoted\" back\\slash \x01\x1f tab\t Zoë";
    cmn_log_debug(&c.log, "id\"with\nnewline", "got: %s", evil);
    /* An embedded newline must not split the record into two lines. */
    cr_assert_eq(line_count(&c), 1);
    json_object *obj = parse_line(&c, 0);
    char expected[256];
    snprintf(expected, sizeof expected, "got: %s", evil);
    cr_assert_str_eq(field(obj, "msg"), expected);
    cr_assert_str_eq(field(obj, "communication_id"), "id\"with\nnewline");
    cr_assert_str_eq(field(obj, "level"), "debug");
    json_object_put(obj);
    capture_close(&c);
}

Test(log, service_name_is_escaped)
{
    capture_t c;
    capture_open(&c, "info");
    c.log.service = "we\"ird";
    cmn_log_info(&c.log, NULL, "x");
    json_object *obj = parse_line(&c, 0);
    cr_assert_str_eq(field(obj, "service"), "we\"ird");
    json_object_put(obj);
    capture_close(&c);
}

Test(log, kv_fields)
{
    capture_t c;
    capture_open(&c, "info");
    cmn_logkv(&c.log, CMN_LOG_ERROR, "cid", (const char *[]){"topic", "crm.dlq", "reason", "bad \"json\"\n", NULL},
              "sent to dlq");
    json_object *obj = parse_line(&c, 0);
    cr_assert_str_eq(field(obj, "topic"), "crm.dlq");
    cr_assert_str_eq(field(obj, "reason"), "bad \"json\"\n");
    cr_assert_str_eq(field(obj, "msg"), "sent to dlq");
    cr_assert_str_eq(field(obj, "communication_id"), "cid");
    cr_assert_eq(json_object_object_length(obj), 7);
    json_object_put(obj);
    capture_close(&c);
}

Test(log, kv_cannot_override_fixed_fields)
{
    capture_t c;
    capture_open(&c, "info");
    cmn_logkv(&c.log, CMN_LOG_INFO, NULL,
              (const char *[]){"level", "debug", "msg", "forged", "partition", "3", NULL}, "real");
    fflush(c.out);
    /* Exactly one "msg" key in the raw line: no duplicates. */
    const char *first = strstr(c.data, "\"msg\"");
    cr_assert_not_null(first);
    cr_assert_null(strstr(first + 1, "\"msg\""));
    json_object *obj = parse_line(&c, 0);
    cr_assert_str_eq(field(obj, "msg"), "real");
    cr_assert_str_eq(field(obj, "level"), "info");
    cr_assert_str_eq(field(obj, "partition"), "3");
    json_object_put(obj);
    capture_close(&c);
}

Test(log, kv_null_value_ends_list_with_null)
{
    capture_t c;
    capture_open(&c, "info");
    cmn_logkv(&c.log, CMN_LOG_INFO, NULL, (const char *[]){"a", "1", "b", NULL}, "m");
    json_object *obj = parse_line(&c, 0);
    cr_assert_str_eq(field(obj, "a"), "1");
    json_object *b = (json_object *)1;
    cr_assert(json_object_object_get_ex(obj, "b", &b));
    cr_assert_null(b, "a NULL value is logged as JSON null");
    json_object_put(obj);
    /* An empty or NULL kv list adds nothing. */
    cmn_logkv(&c.log, CMN_LOG_INFO, NULL, NULL, "m");
    cmn_logkv(&c.log, CMN_LOG_INFO, NULL, (const char *[]){NULL}, "m");
    obj = parse_line(&c, 1);
    cr_assert_eq(json_object_object_length(obj), 4);
    json_object_put(obj);
    obj = parse_line(&c, 2);
    cr_assert_eq(json_object_object_length(obj), 4);
    json_object_put(obj);
    capture_close(&c);
}

Test(log, long_message_is_complete)
{
    capture_t c;
    capture_open(&c, "info");
    char big[20000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cmn_log_info(&c.log, NULL, "%s", big);
    json_object *obj = parse_line(&c, 0);
    cr_assert_eq(strlen(field(obj, "msg")), sizeof big - 1);
    json_object_put(obj);
    capture_close(&c);
}

Test(log, null_logger_is_ignored)
{
    cmn_logf(NULL, CMN_LOG_ERROR, NULL, "nothing happens");
    cmn_logkv(NULL, CMN_LOG_ERROR, NULL, NULL, "nothing happens");
}
