/* envelope_json.h - private helpers shared by the envelope modules:
 * request.c, dispatch.c, status.c and preferences.c.
 *
 * The envelope modules build their wire form as a json-c tree and
 * serialise it once, so escaping is json-c's job and never hand-written. The
 * helpers thread an error code through a chain of calls ("rc = put(..., rc)")
 * so that a long list of fields stays readable while still stopping at the
 * first allocation failure. Not a public header: it is not installed and only
 * the envelope modules include it. */
#ifndef CRM_ENVELOPE_JSON_H
#define CRM_ENVELOPE_JSON_H

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/time.h"

/* Adds key -> copy of v; a NULL v adds nothing (absent optional field). */
static inline int env_put_str(json_object *o, const char *key, const char *v, int rc)
{
    if (rc != 0 || v == NULL)
        return rc;
    json_object *s = json_object_new_string(v);
    if (s == NULL)
        return CMN_ERR_NOMEM;
    if (json_object_object_add(o, key, s) != 0) {
        json_object_put(s);
        return CMN_ERR_NOMEM;
    }
    return 0;
}

static inline int env_put_int(json_object *o, const char *key, int64_t v, int rc)
{
    if (rc != 0)
        return rc;
    json_object *n = json_object_new_int64(v);
    if (n == NULL)
        return CMN_ERR_NOMEM;
    if (json_object_object_add(o, key, n) != 0) {
        json_object_put(n);
        return CMN_ERR_NOMEM;
    }
    return 0;
}

/* Adds key -> RFC 3339 form of ms; 0 means "absent" in every envelope. */
static inline int env_put_time(json_object *o, const char *key, int64_t ms, int rc)
{
    if (rc != 0 || ms == 0)
        return rc;
    char ts[40];
    if (cmn_time_format_rfc3339(ms, ts, sizeof ts) != 0)
        return CMN_ERR_INVALID;
    return env_put_str(o, key, ts, rc);
}

/* Adds key -> child and takes ownership of child whatever happens, so callers
 * never have to remember to release it on the error path. */
static inline int env_put_obj(json_object *o, const char *key, json_object *child, int rc)
{
    if (child == NULL)
        return rc != 0 ? rc : CMN_ERR_NOMEM;
    if (rc != 0) {
        json_object_put(child);
        return rc;
    }
    if (json_object_object_add(o, key, child) != 0) {
        json_object_put(child);
        return CMN_ERR_NOMEM;
    }
    return 0;
}

/* Adds key -> a new reference to a borrowed child (context, attachments). */
static inline int env_put_ref(json_object *o, const char *key, json_object *borrowed, int rc)
{
    if (rc != 0 || borrowed == NULL)
        return rc;
    return env_put_obj(o, key, json_object_get(borrowed), rc);
}

/* Serialises o compactly and appends it to out. */
static inline int env_append(json_object *o, cmn_buf_t *out)
{
    size_t len = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (s == NULL)
        return CMN_ERR_NOMEM;
    return cmn_buf_append(out, s, len);
}

/* Writes the first {"field","reason"} of errors as "field: reason" into
 * errstr, for the single-string error contracts of dispatch and status. */
static inline void env_first_error(json_object *errors, char *errstr, size_t errlen)
{
    if (errstr == NULL || errlen == 0)
        return;
    json_object *e = json_object_array_length(errors) > 0 ? json_object_array_get_idx(errors, 0) : NULL;
    json_object *f = NULL, *r = NULL;
    if (e == NULL || !json_object_object_get_ex(e, "field", &f) || !json_object_object_get_ex(e, "reason", &r)) {
        snprintf(errstr, errlen, "invalid");
        return;
    }
    snprintf(errstr, errlen, "%s: %s", json_object_get_string(f), json_object_get_string(r));
}

#endif
