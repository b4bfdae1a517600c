/* preferences.c - ClientPreferences v1: validation, serialisation, keys.
 *
 * Validation follows request.c: every bad field is reported (a CRM fixing a
 * rejected snapshot should see all problems at once) as {"field","reason"}
 * with the same path spelling, and the field validators (time zone, locale,
 * ids) are the request's own, so a time zone accepted on a request is
 * accepted here and vice versa. The small error-list helpers are repeated
 * rather than shared because request.c keeps its own static. */
#include "crm/preferences.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/time.h"
#include "envelope_json.h"

#define MAX_LOCALE 35
#define MAX_FIELD 256

/* ------------------------------------------------------------ error list */

typedef struct vctx {
    json_object *errors; /* borrowed; NULL when the caller only wants a verdict */
    const char *prefix;  /* prepended to every field name */
    int nerr;
    int rc;              /* CMN_ERR_NOMEM once an allocation failed, else 0 */
} vctx_t;

/* Records one bad field. An empty field names the object the prefix points
 * at (the prefix without its trailing dot), or "preferences" at top level. */
static void verr(vctx_t *v, const char *field, const char *reason)
{
    char path[MAX_FIELD + 128];
    v->nerr++;
    if (v->errors == NULL) {
        return;
    }
    if (field[0] != '\0') {
        snprintf(path, sizeof path, "%s%s", v->prefix, field);
    } else {
        size_t n = strlen(v->prefix);
        if (n > 0 && v->prefix[n - 1] == '.') {
            n--;
        }
        if (n == 0) {
            snprintf(path, sizeof path, "preferences");
        } else {
            snprintf(path, sizeof path, "%.*s", (int)n, v->prefix);
        }
    }
    json_object *e = json_object_new_object();
    int rc = env_put_str(e, "field", path, e == NULL ? CMN_ERR_NOMEM : 0);
    rc = env_put_str(e, "reason", reason, rc);
    if (rc == 0 && json_object_array_add(v->errors, e) == 0) {
        return;
    }
    json_object_put(e);
    v->rc = CMN_ERR_NOMEM;
}

static void verrf(vctx_t *v, const char *reason, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void verrf(vctx_t *v, const char *reason, const char *fmt, ...)
{
    char field[MAX_FIELD];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(field, sizeof field, fmt, ap);
    va_end(ap);
    verr(v, field, reason);
}

/* ------------------------------------------------------ typed accessors */

enum { F_ABSENT = 0, F_PRESENT = 1, F_BAD = -1 };

/* JSON null counts as absent, as in requests. */
static json_object *lookup(json_object *obj, const char *key)
{
    json_object *val = NULL;
    if (!json_object_object_get_ex(obj, key, &val)) {
        return NULL;
    }
    return val;
}

/* A string member: F_PRESENT with *out borrowed from obj, F_ABSENT, or F_BAD
 * after recording why (wrong type, or an embedded NUL, which would silently
 * truncate the value wherever it is used as a C string). */
static int get_string(vctx_t *v, json_object *obj, const char *key, const char *field, const char **out)
{
    json_object *val = lookup(obj, key);
    *out = NULL;
    if (val == NULL) {
        return F_ABSENT;
    }
    if (!json_object_is_type(val, json_type_string)) {
        verr(v, field, "must be a string");
        return F_BAD;
    }
    const char *s = json_object_get_string(val);
    if (strlen(s) != (size_t)json_object_get_string_len(val)) {
        verr(v, field, "must not contain NUL characters");
        return F_BAD;
    }
    *out = s;
    return F_PRESENT;
}

/* A boolean member into *out (left alone unless present and valid). */
static int get_bool(vctx_t *v, json_object *obj, const char *key, const char *field, int *out)
{
    json_object *val = lookup(obj, key);
    if (val == NULL) {
        return F_ABSENT;
    }
    if (!json_object_is_type(val, json_type_boolean)) {
        verr(v, field, "must be true or false");
        return F_BAD;
    }
    *out = json_object_get_boolean(val) ? 1 : 0;
    return F_PRESENT;
}

static void dup_into(vctx_t *v, char **dst, const char *s)
{
    *dst = strdup(s);
    if (*dst == NULL) {
        v->rc = CMN_ERR_NOMEM;
    }
}

static int in_list(const char *const *list, const char *key)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (strcmp(list[i], key) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Unknown members are refused: the schema is closed so that a typo such as
 * "opt_outs" is reported instead of silently dropping an opt-out. */
static void check_unknown(vctx_t *v, json_object *obj, const char *const *known, const char *field_prefix)
{
    json_object_object_foreach(obj, key, member)
    {
        (void)member;
        if (!in_list(known, key)) {
            verrf(v, "unknown field", "%s%s", field_prefix, key);
        }
    }
}

/* An RFC 3339 member into *ms; returns F_ABSENT, F_PRESENT or F_BAD. */
static int get_time(vctx_t *v, json_object *obj, const char *key, const char *field, int64_t *ms)
{
    const char *s = NULL;
    int got = get_string(v, obj, key, field, &s);
    if (got != F_PRESENT) {
        return got;
    }
    if (cmn_time_parse_rfc3339(s, ms) != 0) {
        *ms = 0;
        verr(v, field, "must be an RFC 3339 timestamp like 2026-11-22T09:30:00Z");
        return F_BAD;
    }
    return F_PRESENT;
}

/* ------------------------------------------------------------- sections */

static const char *const TOP_FIELDS[] = {"v",        "tenant_id",   "client_id",        "preferred_channels",
                                         "timezone", "quiet_hours", "opt_out",          "whatsapp_consent",
                                         "locale",   "updated_at",  NULL};
static const char *const QUIET_FIELDS[] = {"start", "end", NULL};
static const char *const OPT_OUT_FIELDS[] = {"email", "sms", "whatsapp", NULL};
static const char *const CONSENT_FIELDS[] = {"granted", "at", "source", NULL};

static void parse_preferred(vctx_t *v, json_object *arr, cmn_preferences_t *p)
{
    if (!json_object_is_type(arr, json_type_array)) {
        verr(v, "preferred_channels", "must be an array of channel names (email, sms, whatsapp)");
        return;
    }
    size_t len = json_object_array_length(arr);
    for (size_t i = 0; i < len; i++) {
        json_object *el = json_object_array_get_idx(arr, i);
        if (el == NULL || !json_object_is_type(el, json_type_string)) {
            verrf(v, "must be a string", "preferred_channels[%zu]", i);
            continue;
        }
        cmn_channel_t c = cmn_channel_parse(json_object_get_string(el));
        if (c == CMN_CHANNEL_NONE) {
            verrf(v, "must be one of email, sms, whatsapp", "preferred_channels[%zu]", i);
            continue;
        }
        int dup = 0;
        for (size_t k = 0; k < p->n_preferred; k++) {
            if (p->preferred[k] == c) {
                dup = 1;
            }
        }
        if (dup) {
            verrf(v, "is listed more than once", "preferred_channels[%zu]", i);
            continue;
        }
        p->preferred[p->n_preferred] = c;
        p->n_preferred++;
    }
}

static void parse_quiet_hours(vctx_t *v, json_object *obj, cmn_preferences_t *p)
{
    const char *start = NULL;
    const char *end = NULL;
    if (!json_object_is_type(obj, json_type_object)) {
        verr(v, "quiet_hours", "must be an object like {\"start\":\"21:00\",\"end\":\"08:00\"}");
        return;
    }
    int got_start = get_string(v, obj, "start", "quiet_hours.start", &start);
    int got_end = get_string(v, obj, "end", "quiet_hours.end", &end);
    int ok = 1;
    if (got_start == F_ABSENT) {
        verr(v, "quiet_hours.start", "is required");
    }
    if (got_end == F_ABSENT) {
        verr(v, "quiet_hours.end", "is required");
    }
    int start_min = 0;
    int end_min = 0;
    if (start != NULL && cmn_quiet_parse_hhmm(start, &start_min) != 0) {
        verr(v, "quiet_hours.start", "must be a local time HH:MM between 00:00 and 23:59");
        ok = 0;
    }
    if (end != NULL && cmn_quiet_parse_hhmm(end, &end_min) != 0) {
        verr(v, "quiet_hours.end", "must be a local time HH:MM between 00:00 and 23:59");
        ok = 0;
    }
    if (ok && start != NULL && end != NULL) {
        p->has_quiet_hours = 1;
        p->quiet_hours.start_min = start_min;
        p->quiet_hours.end_min = end_min;
    }
    check_unknown(v, obj, QUIET_FIELDS, "quiet_hours.");
}

static void parse_opt_out(vctx_t *v, json_object *obj, cmn_preferences_t *p)
{
    if (!json_object_is_type(obj, json_type_object)) {
        verr(v, "opt_out", "must be an object like {\"email\":false,\"sms\":true,\"whatsapp\":false}");
        return;
    }
    for (int c = 0; c < CMN_CHANNEL__COUNT; c++) {
        char field[32];
        int val = 0;
        const char *name = cmn_channel_name((cmn_channel_t)c);
        snprintf(field, sizeof field, "opt_out.%s", name);
        if (get_bool(v, obj, name, field, &val) == F_PRESENT) {
            p->opt_out[c] = (unsigned char)val;
        }
    }
    check_unknown(v, obj, OPT_OUT_FIELDS, "opt_out.");
}

static void parse_consent(vctx_t *v, json_object *obj, cmn_preferences_t *p)
{
    cmn_whatsapp_consent_t *wc = &p->whatsapp_consent;
    const char *source = NULL;
    if (!json_object_is_type(obj, json_type_object)) {
        verr(v, "whatsapp_consent", "must be an object like {\"granted\":true,\"at\":\"...\",\"source\":\"web_form\"}");
        return;
    }
    wc->present = 1;
    int granted = 0;
    int got_granted = get_bool(v, obj, "granted", "whatsapp_consent.granted", &granted);
    if (got_granted == F_ABSENT) {
        verr(v, "whatsapp_consent.granted", "is required");
    }
    wc->granted = granted;
    int got_at = get_time(v, obj, "at", "whatsapp_consent.at", &wc->at_ms);
    int got_source = get_string(v, obj, "source", "whatsapp_consent.source", &source);
    if (source != NULL) {
        if (!cmn_valid_id(source, CMN_PREFS_MAX_SOURCE)) {
            verr(v, "whatsapp_consent.source", "must be 1-64 printable ASCII characters without spaces");
        } else {
            dup_into(v, &wc->source, source);
        }
    }
    if (granted && got_at == F_ABSENT) {
        verr(v, "whatsapp_consent.at", "is required when granted is true");
    }
    if (granted && got_source == F_ABSENT) {
        verr(v, "whatsapp_consent.source", "is required when granted is true");
    }
    check_unknown(v, obj, CONSENT_FIELDS, "whatsapp_consent.");
}

/* A required or optional identifier. no_colon: ':' is refused on top of
 * cmn_valid_id (for the tenant, which heads the key "tenant:client_id"). */
static void parse_id(vctx_t *v, json_object *obj, const char *key, int required, int no_colon, char **dst)
{
    const char *s = NULL;
    int got = get_string(v, obj, key, key, &s);
    if (got == F_ABSENT && required) {
        verr(v, key, "is required");
    }
    if (s == NULL) {
        return;
    }
    if (!cmn_valid_id(s, CMN_REQ_MAX_ID) || (no_colon && strchr(s, ':') != NULL)) {
        verr(v, key,
             no_colon ? "must be 1-128 printable ASCII characters without spaces or ':'"
                      : "must be 1-128 printable ASCII characters without spaces");
    } else {
        dup_into(v, dst, s);
    }
}

int cmn_preferences_from_json(json_object *obj, const char *prefix, cmn_preferences_t *out, json_object *errors)
{
    if (out == NULL) {
        return CMN_ERR_INVALID;
    }
    vctx_t v = {errors, prefix != NULL ? prefix : "", 0, 0};
    const char *s = NULL;
    json_object *val = NULL;
    int got_tz = F_ABSENT;

    out->v = 1;
    if (obj == NULL || !json_object_is_type(obj, json_type_object)) {
        verr(&v, "", "must be a JSON object");
        goto out;
    }

    val = lookup(obj, "v");
    if (val != NULL) {
        if (!json_object_is_type(val, json_type_int)) {
            verr(&v, "v", "must be the integer 1");
        } else if (json_object_get_int64(val) != 1) {
            verr(&v, "v", "unsupported version: this service understands v 1");
        }
    }

    if (lookup(obj, "tenant_id") == NULL) {
        dup_into(&v, &out->tenant_id, "default");
    } else {
        parse_id(&v, obj, "tenant_id", 0, 1, &out->tenant_id);
    }
    parse_id(&v, obj, "client_id", 1, 0, &out->client_id);

    val = lookup(obj, "preferred_channels");
    if (val != NULL) {
        parse_preferred(&v, val, out);
    }

    got_tz = get_string(&v, obj, "timezone", "timezone", &s);
    if (s != NULL) {
        if (!cmn_valid_timezone(s)) {
            verr(&v, "timezone", "must be an IANA time zone like Europe/Paris");
        } else {
            dup_into(&v, &out->timezone, s);
        }
    }

    val = lookup(obj, "quiet_hours");
    if (val != NULL) {
        parse_quiet_hours(&v, val, out);
        /* Only when the time zone is absent: a bad one is already reported. */
        if (got_tz == F_ABSENT) {
            verr(&v, "timezone", "is required when quiet_hours is set (quiet hours are local times)");
        }
    }

    val = lookup(obj, "opt_out");
    if (val != NULL) {
        parse_opt_out(&v, val, out);
    }

    val = lookup(obj, "whatsapp_consent");
    if (val != NULL) {
        parse_consent(&v, val, out);
    }

    if (get_string(&v, obj, "locale", "locale", &s) == F_PRESENT) {
        char canon[MAX_LOCALE + 1];
        if (cmn_locale_normalize(s, canon, sizeof canon) != 0) {
            verr(&v, "locale", "must be a BCP 47 language tag like en, fr-CA or pt-BR");
        } else {
            dup_into(&v, &out->locale, canon);
        }
    }

    if (get_time(&v, obj, "updated_at", "updated_at", &out->updated_at_ms) == F_ABSENT) {
        verr(&v, "updated_at", "is required");
    }

    check_unknown(&v, obj, TOP_FIELDS, "");

out:
    if (v.rc != 0) {
        return v.rc;
    }
    return v.nerr > 0 ? CMN_ERR_INVALID : 0;
}

/* -------------------------------------------------------- serialisation */

static int put_bool(json_object *o, const char *key, int b, int rc)
{
    if (rc != 0) {
        return rc;
    }
    json_object *val = json_object_new_boolean(b ? 1 : 0);
    return env_put_obj(o, key, val, rc);
}

static json_object *preferred_array(const cmn_preferences_t *p)
{
    json_object *arr = json_object_new_array();
    for (size_t i = 0; arr != NULL && i < p->n_preferred; i++) {
        json_object *s = json_object_new_string(cmn_channel_name(p->preferred[i]));
        if (s == NULL || json_object_array_add(arr, s) != 0) {
            json_object_put(s);
            json_object_put(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* {"start","end"} from two formatted HH:MM strings; NULL when out of memory. */
static json_object *quiet_object(const char *start, const char *end)
{
    json_object *o = json_object_new_object();
    int rc = env_put_str(o, "start", start, o == NULL ? CMN_ERR_NOMEM : 0);
    rc = env_put_str(o, "end", end, rc);
    if (rc != 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static json_object *opt_out_object(const cmn_preferences_t *p)
{
    json_object *o = json_object_new_object();
    int rc = o == NULL ? CMN_ERR_NOMEM : 0;
    for (int c = 0; c < CMN_CHANNEL__COUNT; c++) {
        rc = put_bool(o, cmn_channel_name((cmn_channel_t)c), p->opt_out[c], rc);
    }
    if (rc != 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static json_object *consent_object(const cmn_whatsapp_consent_t *wc)
{
    json_object *o = json_object_new_object();
    int rc = put_bool(o, "granted", wc->granted, o == NULL ? CMN_ERR_NOMEM : 0);
    rc = env_put_time(o, "at", wc->at_ms, rc);
    rc = env_put_str(o, "source", wc->source, rc);
    if (rc != 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

int cmn_preferences_to_json(const cmn_preferences_t *p, cmn_buf_t *out)
{
    if (p == NULL || out == NULL) {
        return CMN_ERR_INVALID;
    }
    json_object *o = json_object_new_object();
    if (o == NULL) {
        return CMN_ERR_NOMEM;
    }
    int rc = env_put_int(o, "v", p->v > 0 ? p->v : 1, 0);
    rc = env_put_str(o, "tenant_id", p->tenant_id != NULL ? p->tenant_id : "default", rc);
    rc = env_put_str(o, "client_id", p->client_id, rc);
    rc = env_put_obj(o, "preferred_channels", preferred_array(p), rc);
    rc = env_put_str(o, "timezone", p->timezone, rc);
    if (p->has_quiet_hours && rc == 0) {
        char start[CMN_QUIET_HHMM_SIZE];
        char end[CMN_QUIET_HHMM_SIZE];
        /* Minutes out of range can only come from a struct not filled by
         * cmn_preferences_from_json; refuse to write them. */
        if (cmn_quiet_format_hhmm(p->quiet_hours.start_min, start) != 0 ||
            cmn_quiet_format_hhmm(p->quiet_hours.end_min, end) != 0) {
            rc = CMN_ERR_INVALID;
        } else {
            rc = env_put_obj(o, "quiet_hours", quiet_object(start, end), rc);
        }
    }
    rc = env_put_obj(o, "opt_out", opt_out_object(p), rc);
    if (p->whatsapp_consent.present) {
        rc = env_put_obj(o, "whatsapp_consent", consent_object(&p->whatsapp_consent), rc);
    }
    rc = env_put_str(o, "locale", p->locale, rc);
    rc = env_put_time(o, "updated_at", p->updated_at_ms, rc);
    if (rc == 0) {
        rc = env_append(o, out);
    }
    json_object_put(o);
    return rc;
}

void cmn_preferences_clear(cmn_preferences_t *p)
{
    if (p == NULL) {
        return;
    }
    free(p->tenant_id);
    free(p->client_id);
    free(p->timezone);
    free(p->locale);
    free(p->whatsapp_consent.source);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------ keys */

int cmn_preferences_key(const char *tenant_id, const char *client_id, char *out, size_t outlen)
{
    const char *tenant = tenant_id != NULL ? tenant_id : "default";
    if (out == NULL || outlen == 0) {
        return CMN_ERR_INVALID;
    }
    out[0] = '\0';
    /* The key is split at its first ':', so only the tenant must be free of
     * it; a client id may contain ':' and the key stays unambiguous. */
    if (!cmn_valid_id(tenant, CMN_REQ_MAX_ID) || strchr(tenant, ':') != NULL ||
        !cmn_valid_id(client_id, CMN_REQ_MAX_ID)) {
        return CMN_ERR_INVALID;
    }
    int n = snprintf(out, outlen, "%s:%s", tenant, client_id);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return CMN_ERR_OVERFLOW;
    }
    return 0;
}

/* Copies len bytes of s into a NUL-terminated out and checks it is an id. */
static int copy_id(const char *s, size_t len, char *out, size_t outlen)
{
    if (len >= outlen) {
        return CMN_ERR_OVERFLOW;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    /* strlen catches a NUL inside the key, which cmn_valid_id cannot see. */
    if (strlen(out) != len || !cmn_valid_id(out, CMN_REQ_MAX_ID)) {
        return CMN_ERR_INVALID;
    }
    return 0;
}

int cmn_preferences_key_parse(const void *key, size_t len, char *tenant, size_t tenantlen, char *client,
                              size_t clientlen)
{
    const char *k = key;
    const char *colon = NULL;
    size_t tlen = 0;
    int rc = 0;
    if (key == NULL || tenant == NULL || client == NULL || tenantlen == 0 || clientlen == 0) {
        return CMN_ERR_INVALID;
    }
    colon = memchr(k, ':', len);
    if (colon == NULL) {
        rc = CMN_ERR_INVALID;
        goto cleanup;
    }
    tlen = (size_t)(colon - k);
    rc = copy_id(k, tlen, tenant, tenantlen);
    if (rc == 0) {
        rc = copy_id(colon + 1, len - tlen - 1, client, clientlen);
    }

cleanup:
    if (rc != 0) {
        tenant[0] = '\0';
        client[0] = '\0';
    }
    return rc;
}

int cmn_preferences_opted_out(const cmn_preferences_t *p, cmn_channel_t c)
{
    if (p == NULL || (int)c < 0 || (int)c >= CMN_CHANNEL__COUNT) {
        return 0;
    }
    return p->opt_out[c] != 0;
}

int cmn_preferences_whatsapp_consented(const cmn_preferences_t *p)
{
    return p != NULL && p->whatsapp_consent.present && p->whatsapp_consent.granted;
}
