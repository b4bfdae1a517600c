/* dispatch.c - Dispatch v1 (de)serialisation.
 *
 * A dispatch is written by our own router, so parsing reports only the first
 * problem (in errstr) instead of collecting a list: a bad dispatch is a bug or
 * a corrupted record, it goes to the DLQ with that one reason. The address
 * in "to" is still re-validated against the channel, because a worker puts it
 * into SMTP headers and provider API calls. */
#include "crm/dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/time.h"
#include "envelope_json.h"

#define MAX_ATTEMPT 1000000
#define MAX_HOP 64

/* Writes "field: reason" into errstr and returns CMN_ERR_INVALID, so checks
 * read as "return bad(...)" / "rc = bad(...)". */
static int bad(char *errstr, size_t errlen, const char *field, const char *reason)
{
    if (errstr != NULL && errlen > 0)
        snprintf(errstr, errlen, "%s: %s", field, reason);
    return CMN_ERR_INVALID;
}

/* Fetches a string member: 0 with *out borrowed (NULL when absent or null),
 * or CMN_ERR_INVALID for another type. */
static int opt_string(json_object *obj, const char *key, const char **out, char *errstr, size_t errlen)
{
    json_object *val = NULL;
    *out = NULL;
    if (!json_object_object_get_ex(obj, key, &val) || val == NULL)
        return 0;
    if (!json_object_is_type(val, json_type_string))
        return bad(errstr, errlen, key, "must be a string");
    *out = json_object_get_string(val);
    return 0;
}

/* A required identifier, copied into *dst. */
static int req_id(json_object *obj, const char *key, char **dst, char *errstr, size_t errlen)
{
    const char *s = NULL;
    int rc = opt_string(obj, key, &s, errstr, errlen);
    if (rc != 0)
        return rc;
    if (s == NULL)
        return bad(errstr, errlen, key, "is required");
    if (!cmn_valid_id(s, CMN_REQ_MAX_ID))
        return bad(errstr, errlen, key, "must be 1-128 printable ASCII characters without spaces");
    *dst = strdup(s);
    return *dst != NULL ? 0 : CMN_ERR_NOMEM;
}

/* An integer member in [min, max]; *out keeps its default when absent. */
static int get_int(json_object *obj, const char *key, int required, int min, int max, int *out, char *errstr,
                   size_t errlen)
{
    json_object *val = NULL;
    if (!json_object_object_get_ex(obj, key, &val) || val == NULL)
        return required ? bad(errstr, errlen, key, "is required") : 0;
    if (!json_object_is_type(val, json_type_int))
        return bad(errstr, errlen, key, "must be an integer");
    int64_t n = json_object_get_int64(val);
    if (n < min || n > max)
        return bad(errstr, errlen, key, "is out of range");
    *out = (int)n;
    return 0;
}

static int get_time(json_object *obj, const char *key, int required, int64_t *ms, char *errstr, size_t errlen)
{
    const char *s = NULL;
    int rc = opt_string(obj, key, &s, errstr, errlen);
    if (rc != 0)
        return rc;
    if (s == NULL)
        return required ? bad(errstr, errlen, key, "is required") : 0;
    if (cmn_time_parse_rfc3339(s, ms) != 0)
        return bad(errstr, errlen, key, "must be an RFC 3339 timestamp");
    return 0;
}

/* The address must have the syntax its channel needs. */
static int valid_address(cmn_channel_t c, const char *to)
{
    if (c == CMN_CHANNEL_EMAIL)
        return cmn_valid_email(to);
    return cmn_valid_e164(to);
}

int cmn_dispatch_from_json(json_object *obj, cmn_dispatch_t *d, char *errstr, size_t errlen)
{
    int rc = 0;
    const char *s = NULL;
    json_object *val = NULL;
    json_object *errors = NULL;

    if (d == NULL)
        return CMN_ERR_INVALID;
    d->v = 1;
    d->urgency = CMN_URGENCY_NORMAL;
    d->channel = CMN_CHANNEL_NONE;
    if (obj == NULL || !json_object_is_type(obj, json_type_object)) {
        rc = bad(errstr, errlen, "dispatch", "must be a JSON object");
        goto out;
    }

    rc = get_int(obj, "v", 0, 1, 1, &d->v, errstr, errlen);
    if (rc != 0) {
        rc = bad(errstr, errlen, "v", "unsupported version: this service understands v 1");
        goto out;
    }

    rc = opt_string(obj, "communication_id", &s, errstr, errlen);
    if (rc == 0 && s == NULL)
        rc = bad(errstr, errlen, "communication_id", "is required");
    if (rc == 0 && !cmn_uuid_is_valid(s))
        rc = bad(errstr, errlen, "communication_id", "must be a UUID");
    if (rc != 0)
        goto out;
    snprintf(d->communication_id, sizeof d->communication_id, "%s", s);

    rc = req_id(obj, "request_id", &d->request_id, errstr, errlen);
    if (rc == 0)
        rc = req_id(obj, "tenant_id", &d->tenant_id, errstr, errlen);
    if (rc == 0)
        rc = req_id(obj, "client_id", &d->client_id, errstr, errlen);
    if (rc != 0)
        goto out;

    rc = opt_string(obj, "message_type", &s, errstr, errlen);
    if (rc == 0 && !cmn_valid_message_type(s))
        rc = bad(errstr, errlen, "message_type", s == NULL ? "is required" : "is not a valid message type");
    if (rc != 0)
        goto out;
    d->message_type = strdup(s);
    if (d->message_type == NULL) {
        rc = CMN_ERR_NOMEM;
        goto out;
    }

    rc = opt_string(obj, "urgency", &s, errstr, errlen);
    if (rc == 0 && s != NULL && cmn_urgency_parse(s, &d->urgency) != 0)
        rc = bad(errstr, errlen, "urgency", "must be one of low, normal, high, critical");
    if (rc != 0)
        goto out;

    rc = opt_string(obj, "channel", &s, errstr, errlen);
    if (rc != 0)
        goto out;
    d->channel = cmn_channel_parse(s);
    if (d->channel == CMN_CHANNEL_NONE) {
        rc = bad(errstr, errlen, "channel", s == NULL ? "is required" : "must be one of email, sms, whatsapp");
        goto out;
    }

    rc = get_int(obj, "attempt", 1, 1, MAX_ATTEMPT, &d->attempt, errstr, errlen);
    if (rc == 0)
        rc = get_int(obj, "hop", 0, 0, MAX_HOP, &d->hop, errstr, errlen);
    if (rc != 0)
        goto out;

    rc = opt_string(obj, "to", &s, errstr, errlen);
    if (rc == 0 && s == NULL)
        rc = bad(errstr, errlen, "to", "is required");
    if (rc == 0 && !valid_address(d->channel, s))
        rc = bad(errstr, errlen, "to", "is not a valid address for the channel");
    if (rc != 0)
        goto out;
    d->to = strdup(s);
    if (d->to == NULL) {
        rc = CMN_ERR_NOMEM;
        goto out;
    }

    errors = json_object_new_array();
    if (errors == NULL) {
        rc = CMN_ERR_NOMEM;
        goto out;
    }
    json_object_object_get_ex(obj, "recipient", &val);
    rc = cmn_recipient_from_json(val, "recipient.", &d->recipient, errors);
    if (rc == CMN_ERR_INVALID)
        env_first_error(errors, errstr, errlen);
    if (rc != 0)
        goto out;

    rc = opt_string(obj, "template", &s, errstr, errlen);
    if (rc == 0 && s != NULL && !cmn_valid_template_name(s))
        rc = bad(errstr, errlen, "template", "is not a valid template name");
    if (rc == 0 && s != NULL) {
        d->template_name = strdup(s);
        rc = d->template_name != NULL ? 0 : CMN_ERR_NOMEM;
    }
    if (rc != 0)
        goto out;

    rc = opt_string(obj, "locale", &s, errstr, errlen);
    if (rc == 0 && s != NULL) {
        char canon[64];
        if (cmn_locale_normalize(s, canon, sizeof canon) != 0) {
            rc = bad(errstr, errlen, "locale", "must be a BCP 47 language tag");
        } else {
            d->locale = strdup(canon);
            rc = d->locale != NULL ? 0 : CMN_ERR_NOMEM;
        }
    }
    if (rc != 0)
        goto out;

    val = NULL;
    json_object_object_get_ex(obj, "context", &val);
    if (val != NULL && !json_object_is_type(val, json_type_object)) {
        rc = bad(errstr, errlen, "context", "must be an object");
        goto out;
    }
    d->context = json_object_get(val);

    val = NULL;
    json_object_object_get_ex(obj, "attachments", &val);
    if (val != NULL && !json_object_is_type(val, json_type_array)) {
        rc = bad(errstr, errlen, "attachments", "must be an array");
        goto out;
    }
    d->attachments = json_object_get(val);

    val = NULL;
    json_object_object_get_ex(obj, "fallback", &val);
    if (val != NULL) {
        if (!json_object_is_type(val, json_type_array)) {
            rc = bad(errstr, errlen, "fallback", "must be an array of channel names");
            goto out;
        }
        size_t n = json_object_array_length(val);
        for (size_t i = 0; i < n; i++) {
            json_object *el = json_object_array_get_idx(val, i);
            cmn_channel_t c = cmn_channel_parse(json_object_is_type(el, json_type_string)
                                                    ? json_object_get_string(el) : NULL);
            int dup = c == d->channel;
            for (size_t k = 0; k < d->n_fallback; k++) {
                if (d->fallback[k] == c)
                    dup = 1;
            }
            if (c == CMN_CHANNEL_NONE || dup || d->n_fallback >= CMN_CHANNEL__COUNT) {
                rc = bad(errstr, errlen, "fallback", "must list distinct channels other than channel");
                goto out;
            }
            d->fallback[d->n_fallback++] = c;
        }
    }

    rc = get_time(obj, "deadline", 0, &d->deadline_ms, errstr, errlen);
    if (rc == 0)
        rc = get_time(obj, "created_at", 1, &d->created_at_ms, errstr, errlen);

out:
    json_object_put(errors);
    return rc;
}

int cmn_dispatch_to_json(const cmn_dispatch_t *d, cmn_buf_t *out)
{
    if (d == NULL || out == NULL)
        return CMN_ERR_INVALID;
    json_object *o = json_object_new_object();
    if (o == NULL)
        return CMN_ERR_NOMEM;
    json_object *fallback = json_object_new_array();
    for (size_t i = 0; fallback != NULL && i < d->n_fallback; i++) {
        json_object *s = json_object_new_string(cmn_channel_name(d->fallback[i]));
        if (s == NULL || json_object_array_add(fallback, s) != 0) {
            json_object_put(s);
            json_object_put(fallback);
            fallback = NULL;
        }
    }
    int rc = env_put_int(o, "v", d->v > 0 ? d->v : 1, 0);
    rc = env_put_str(o, "communication_id", d->communication_id, rc);
    rc = env_put_str(o, "request_id", d->request_id, rc);
    rc = env_put_str(o, "tenant_id", d->tenant_id, rc);
    rc = env_put_str(o, "client_id", d->client_id, rc);
    rc = env_put_str(o, "message_type", d->message_type, rc);
    rc = env_put_str(o, "urgency", cmn_urgency_name(d->urgency), rc);
    rc = env_put_str(o, "channel", cmn_channel_name(d->channel), rc);
    rc = env_put_int(o, "attempt", d->attempt, rc);
    rc = env_put_int(o, "hop", d->hop, rc);
    rc = env_put_str(o, "to", d->to, rc);
    rc = env_put_obj(o, "recipient", cmn_recipient_to_json_object(&d->recipient), rc);
    rc = env_put_str(o, "template", d->template_name, rc);
    rc = env_put_str(o, "locale", d->locale, rc);
    rc = env_put_ref(o, "context", d->context, rc);
    rc = env_put_ref(o, "attachments", d->attachments, rc);
    rc = env_put_obj(o, "fallback", fallback, rc);
    rc = env_put_time(o, "deadline", d->deadline_ms, rc);
    rc = env_put_time(o, "created_at", d->created_at_ms, rc);
    if (rc == 0)
        rc = env_append(o, out);
    json_object_put(o);
    return rc;
}

void cmn_dispatch_clear(cmn_dispatch_t *d)
{
    if (d == NULL)
        return;
    free(d->request_id);
    free(d->tenant_id);
    free(d->client_id);
    free(d->message_type);
    free(d->template_name);
    free(d->locale);
    free(d->to);
    cmn_recipient_clear(&d->recipient);
    json_object_put(d->context);
    json_object_put(d->attachments);
    memset(d, 0, sizeof *d);
}
