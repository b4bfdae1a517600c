/* json.c - typed accessors and strict parsing over json-c. */
#include "crm/json.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "crm/err.h"

/* Nesting limit: deep enough for every envelope we define, shallow enough
 * that a hostile "[[[[..." cannot exhaust the stack of the recursive parser. */
#define CMN_JSON_MAX_DEPTH 64

/* Looks key up in obj; NULL when obj is not an object or the key is absent.
 * A key present with the JSON value null also yields NULL (json-c represents
 * null as a NULL pointer), which the typed getters treat as "wrong type". */
static json_object *lookup(const json_object *obj, const char *key, int *found)
{
    json_object *val = NULL;
    int present = 0;
    if (obj != NULL && key != NULL && json_object_is_type(obj, json_type_object)) {
        present = json_object_object_get_ex(obj, key, &val) ? 1 : 0;
    }
    if (found != NULL) {
        *found = present;
    }
    return present ? val : NULL;
}

int cmn_json_has(const json_object *obj, const char *key)
{
    int found = 0;
    lookup(obj, key, &found);
    return found;
}

const char *cmn_json_get_string(const json_object *obj, const char *key)
{
    json_object *val = lookup(obj, key, NULL);
    if (val == NULL || !json_object_is_type(val, json_type_string)) {
        return NULL;
    }
    return json_object_get_string(val);
}

json_object *cmn_json_get_object(const json_object *obj, const char *key)
{
    json_object *val = lookup(obj, key, NULL);
    if (val == NULL || !json_object_is_type(val, json_type_object)) {
        return NULL;
    }
    return val;
}

json_object *cmn_json_get_array(const json_object *obj, const char *key)
{
    json_object *val = lookup(obj, key, NULL);
    if (val == NULL || !json_object_is_type(val, json_type_array)) {
        return NULL;
    }
    return val;
}

int cmn_json_get_int64(const json_object *obj, const char *key, int64_t *out)
{
    if (out == NULL) {
        return CMN_ERR_INVALID;
    }
    int found = 0;
    json_object *val = lookup(obj, key, &found);
    if (!found) {
        return CMN_ERR_NOTFOUND;
    }
    /* Only JSON integers count: 1.5 or "15" is a type error the caller should
     * report, not a value to coerce. */
    if (val == NULL || !json_object_is_type(val, json_type_int)) {
        return CMN_ERR_INVALID;
    }
    /* json-c keeps integers above INT64_MAX as uint64 and clamps them in
     * json_object_get_int64(); such a value does not fit, so refuse it rather
     * than hand out INT64_MAX. */
    if (json_object_get_uint64(val) > (uint64_t)INT64_MAX) {
        return CMN_ERR_INVALID;
    }
    *out = json_object_get_int64(val);
    return CMN_OK;
}

static int is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

json_object *cmn_json_parse(const char *data, size_t len, char *errstr, size_t errlen)
{
    json_object *result = NULL;
    json_tokener *tok = NULL;
    const char *reason = NULL;
    const char *nul = NULL;
    enum json_tokener_error jerr = json_tokener_success;
    size_t pos = 0;

    if (errstr != NULL && errlen > 0) {
        errstr[0] = '\0';
    }
    if (data == NULL && len > 0) {
        reason = "no input";
        goto cleanup;
    }
    /* json_tokener_parse_ex() takes an int length. */
    if (len > (size_t)INT_MAX - 1) {
        reason = "input too large";
        goto cleanup;
    }
    /* A NUL byte is never valid JSON text, and json-c would stop at it (or
     * keep it inside a string that C code then sees truncated). */
    nul = len > 0 ? memchr(data, '\0', len) : NULL;
    if (nul != NULL) {
        pos = (size_t)(nul - data);
        reason = "NUL byte in input";
        goto cleanup;
    }
    /* With max depth d, json-c admits exactly d nested containers. */
    tok = json_tokener_new_ex(CMN_JSON_MAX_DEPTH);
    if (tok == NULL) {
        reason = "out of memory";
        goto cleanup;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);

    result = json_tokener_parse_ex(tok, len > 0 ? data : "", (int)len);
    jerr = json_tokener_get_error(tok);
    pos = json_tokener_get_parse_end(tok);
    if (result == NULL && jerr == json_tokener_continue) {
        /* The input is not NUL-terminated, so the tokener cannot know a
         * top-level number (or an unfinished document) has ended. Feeding the
         * terminating NUL as a separate chunk tells it the input is over. */
        result = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        pos = len;
    }
    if (result == NULL) {
        reason = jerr == json_tokener_continue || jerr == json_tokener_success
                     ? "unexpected end of input"
                     : json_tokener_error_desc(jerr);
        goto cleanup;
    }
    /* A value followed by more text ("{} x", "1 2") is rejected: accepting it
     * would silently ignore part of what a producer sent. */
    for (size_t i = pos; i < len; i++) {
        if (!is_json_ws(data[i])) {
            pos = i;
            reason = "unexpected data after the JSON value";
            json_object_put(result);
            result = NULL;
            goto cleanup;
        }
    }

cleanup:
    if (result == NULL && errstr != NULL && errlen > 0) {
        snprintf(errstr, errlen, "invalid JSON at offset %zu: %s", pos,
                 reason != NULL ? reason : "unknown error");
    }
    if (tok != NULL) {
        json_tokener_free(tok);
    }
    return result;
}

int cmn_json_to_buf(json_object *obj, cmn_buf_t *out)
{
    if (out == NULL) {
        return CMN_ERR_INVALID;
    }
    /* obj NULL is JSON null in json-c's model and serialises as "null". The
     * returned string belongs to obj and lives until obj is modified or freed. */
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (s == NULL) {
        return CMN_ERR_NOMEM;
    }
    return cmn_buf_append(out, s, n);
}

int cmn_json_add_string(json_object *obj, const char *key, const char *value)
{
    if (obj == NULL || key == NULL || !json_object_is_type(obj, json_type_object)) {
        return CMN_ERR_INVALID;
    }
    if (value == NULL) {
        return CMN_OK;
    }
    json_object *s = json_object_new_string(value);
    if (s == NULL) {
        return CMN_ERR_NOMEM;
    }
    /* On success obj takes over our reference to s; on failure json-c leaves
     * it with us, so release it to avoid a leak. */
    if (json_object_object_add(obj, key, s) != 0) {
        json_object_put(s);
        return CMN_ERR_NOMEM;
    }
    return CMN_OK;
}

int cmn_json_add_int64(json_object *obj, const char *key, int64_t value)
{
    if (obj == NULL || key == NULL || !json_object_is_type(obj, json_type_object)) {
        return CMN_ERR_INVALID;
    }
    json_object *n = json_object_new_int64(value);
    if (n == NULL) {
        return CMN_ERR_NOMEM;
    }
    if (json_object_object_add(obj, key, n) != 0) {
        json_object_put(n);
        return CMN_ERR_NOMEM;
    }
    return CMN_OK;
}
