/* status.c - StatusEvent v1: names, ranks, event ids and (de)serialisation.
 *
 * Events are emitted by many services and applied by the projector in
 * whatever order Kafka delivers them, so two properties matter more than
 * anything else here: the rank table (a late "sent" must never overwrite
 * "delivered") and the deterministic event_id (an event re-emitted after a
 * crash must be stored once). */
#include "crm/status.h"

#include <stdio.h>
#include <string.h>

#include "crm/err.h"
#include "crm/time.h"
#include "envelope_json.h"

#define MAX_COUNTER 1000000

/* Indexed by cmn_status_t; the order of the enum, not of the ranks. */
static const struct {
    const char *name;
    int rank;
    int terminal;
} STATUS_TABLE[CMN_STATUS__COUNT] = {
    [CMN_STATUS_ACCEPTED] = {"accepted", 10, 0},
    [CMN_STATUS_REJECTED] = {"rejected", 90, 1},
    [CMN_STATUS_ROUTED] = {"routed", 20, 0},
    [CMN_STATUS_DEFERRED] = {"deferred", 15, 0},
    [CMN_STATUS_SUPPRESSED] = {"suppressed", 90, 1},
    [CMN_STATUS_SENDING] = {"sending", 30, 0},
    [CMN_STATUS_SENT] = {"sent", 40, 1},
    [CMN_STATUS_DELIVERED] = {"delivered", 50, 1},
    [CMN_STATUS_READ] = {"read", 60, 1},
    [CMN_STATUS_OPENED] = {"opened", 55, 1},
    [CMN_STATUS_CLICKED] = {"clicked", 65, 1},
    [CMN_STATUS_RETRY_SCHEDULED] = {"retry_scheduled", 35, 0},
    [CMN_STATUS_FALLBACK] = {"fallback", 80, 0},
    [CMN_STATUS_FAILED] = {"failed", 90, 1},
    [CMN_STATUS_DEAD] = {"dead", 95, 1},
};

static int status_ok(cmn_status_t s)
{
    return (int)s >= 0 && s < CMN_STATUS__COUNT;
}

const char *cmn_status_name(cmn_status_t s)
{
    return status_ok(s) ? STATUS_TABLE[s].name : "";
}

int cmn_status_parse(const char *s, cmn_status_t *out)
{
    if (s == NULL || out == NULL)
        return CMN_ERR_INVALID;
    for (int i = 0; i < CMN_STATUS__COUNT; i++) {
        if (strcmp(STATUS_TABLE[i].name, s) == 0) {
            *out = (cmn_status_t)i;
            return 0;
        }
    }
    return CMN_ERR_INVALID;
}

/* -1 for a value outside the enum, below every real rank. */
int cmn_status_rank(cmn_status_t s)
{
    return status_ok(s) ? STATUS_TABLE[s].rank : -1;
}

int cmn_status_is_terminal(cmn_status_t s)
{
    return status_ok(s) ? STATUS_TABLE[s].terminal : 0;
}

int cmn_status_event_finalize(cmn_status_event_t *ev)
{
    if (ev == NULL || !status_ok(ev->status))
        return CMN_ERR_INVALID;
    /* '|' separated, NULLs as "": the exact input of the id is part of the
     * wire contract, because replicas of different versions must agree. */
    cmn_buf_t name = CMN_BUF_INIT;
    int rc = cmn_buf_printf(&name, "%s|%s|%s|%d|%d|%s", ev->communication_id, cmn_status_name(ev->status),
                            cmn_channel_name(ev->channel), ev->hop, ev->attempt,
                            ev->discriminator != NULL ? ev->discriminator : "");
    if (rc == 0)
        rc = cmn_uuid_v5(CMN_UUID_NS_EVENT, name.data, name.len, ev->event_id);
    cmn_buf_free(&name);
    return rc;
}

/* Adds "details" parsed from text. Only an object is accepted: the member
 * is a bag of named facts, and a scalar or array there would be a producer
 * bug that consumers should never have to cope with. */
static int put_details(json_object *o, const char *text)
{
    enum json_tokener_error jerr = json_tokener_success;
    json_object *details = json_tokener_parse_verbose(text, &jerr);
    if (details == NULL || !json_object_is_type(details, json_type_object)) {
        json_object_put(details);
        return CMN_ERR_INVALID;
    }
    return env_put_obj(o, "details", details, 0);
}

int cmn_status_event_to_json(const cmn_status_event_t *ev, cmn_buf_t *out)
{
    if (ev == NULL || out == NULL || !status_ok(ev->status))
        return CMN_ERR_INVALID;
    json_object *o = json_object_new_object();
    if (o == NULL)
        return CMN_ERR_NOMEM;
    int rc = env_put_int(o, "v", 1, 0);
    rc = env_put_str(o, "event_id", ev->event_id, rc);
    rc = env_put_str(o, "communication_id", ev->communication_id, rc);
    rc = env_put_str(o, "request_id", ev->request_id, rc);
    rc = env_put_str(o, "tenant_id", ev->tenant_id, rc);
    rc = env_put_str(o, "client_id", ev->client_id, rc);
    rc = env_put_str(o, "message_type", ev->message_type, rc);
    /* Before routing there is no channel; the member is then left out
     * rather than written as "", and parsing maps absence back to NONE. */
    if (ev->channel != CMN_CHANNEL_NONE)
        rc = env_put_str(o, "channel", cmn_channel_name(ev->channel), rc);
    rc = env_put_str(o, "status", cmn_status_name(ev->status), rc);
    rc = env_put_int(o, "attempt", ev->attempt, rc);
    rc = env_put_int(o, "hop", ev->hop, rc);
    rc = env_put_str(o, "provider", ev->provider, rc);
    rc = env_put_str(o, "provider_message_id", ev->provider_message_id, rc);
    rc = env_put_str(o, "error_code", ev->error_code, rc);
    rc = env_put_str(o, "error_message", ev->error_message, rc);
    rc = env_put_str(o, "reason", ev->reason, rc);
    if (rc == 0 && ev->details_json != NULL)
        rc = put_details(o, ev->details_json);
    rc = env_put_time(o, "occurred_at", ev->occurred_at_ms, rc);
    if (rc == 0)
        rc = env_append(o, out);
    json_object_put(o);
    return rc;
}

static int fail(char *errstr, size_t errlen, const char *field, const char *reason)
{
    if (errstr != NULL && errlen > 0)
        snprintf(errstr, errlen, "%s: %s", field, reason);
    return CMN_ERR_INVALID;
}

/* Borrowed string member, NULL when absent or null; CMN_ERR_INVALID for another type. */
static int opt_string(json_object *obj, const char *key, const char **out, char *errstr, size_t errlen)
{
    json_object *val = NULL;
    *out = NULL;
    if (!json_object_object_get_ex(obj, key, &val) || val == NULL)
        return 0;
    if (!json_object_is_type(val, json_type_string))
        return fail(errstr, errlen, key, "must be a string");
    *out = json_object_get_string(val);
    return 0;
}

static int opt_count(json_object *obj, const char *key, int *out, char *errstr, size_t errlen)
{
    json_object *val = NULL;
    *out = 0;
    if (!json_object_object_get_ex(obj, key, &val) || val == NULL)
        return 0;
    if (!json_object_is_type(val, json_type_int))
        return fail(errstr, errlen, key, "must be an integer");
    int64_t n = json_object_get_int64(val);
    if (n < 0 || n > MAX_COUNTER)
        return fail(errstr, errlen, key, "is out of range");
    *out = (int)n;
    return 0;
}

/* A required UUID member copied into dst. */
static int req_uuid(json_object *obj, const char *key, char dst[CMN_UUID_STR_LEN + 1], char *errstr, size_t errlen)
{
    const char *s = NULL;
    int rc = opt_string(obj, key, &s, errstr, errlen);
    if (rc != 0)
        return rc;
    if (s == NULL)
        return fail(errstr, errlen, key, "is required");
    if (!cmn_uuid_is_valid(s))
        return fail(errstr, errlen, key, "must be a UUID");
    snprintf(dst, CMN_UUID_STR_LEN + 1, "%s", s);
    return 0;
}

int cmn_status_event_from_json(json_object *obj, cmn_status_event_t *ev, char *errstr, size_t errlen)
{
    const char *s = NULL;
    json_object *val = NULL;
    int rc = 0;

    if (ev == NULL)
        return CMN_ERR_INVALID;
    memset(ev, 0, sizeof *ev);
    ev->channel = CMN_CHANNEL_NONE;
    if (obj == NULL || !json_object_is_type(obj, json_type_object))
        return fail(errstr, errlen, "event", "must be a JSON object");

    if (json_object_object_get_ex(obj, "v", &val) && val != NULL &&
        (!json_object_is_type(val, json_type_int) || json_object_get_int64(val) != 1))
        return fail(errstr, errlen, "v", "unsupported version: this service understands v 1");

    rc = req_uuid(obj, "event_id", ev->event_id, errstr, errlen);
    if (rc != 0)
        return rc;
    /* A provider receipt the webhook receiver could not tie to a
     * communication carries "" (or nothing) here and names the message by
     * provider_message_id instead; consumers resolve it through the `sent`
     * event of that provider message id. Any other event needs the id. */
    rc = opt_string(obj, "communication_id", &s, errstr, errlen);
    if (rc != 0)
        return rc;
    if (s == NULL || s[0] == '\0') {
        const char *pmid = NULL;
        rc = opt_string(obj, "provider_message_id", &pmid, errstr, errlen);
        if (rc != 0)
            return rc;
        if (pmid == NULL || pmid[0] == '\0')
            return fail(errstr, errlen, "communication_id", "is required (or provider_message_id)");
    } else {
        rc = req_uuid(obj, "communication_id", ev->communication_id, errstr, errlen);
        if (rc != 0)
            return rc;
    }

    rc = opt_string(obj, "status", &s, errstr, errlen);
    if (rc != 0)
        return rc;
    if (s == NULL)
        return fail(errstr, errlen, "status", "is required");
    if (cmn_status_parse(s, &ev->status) != 0)
        return fail(errstr, errlen, "status", "is not a known status");

    rc = opt_string(obj, "channel", &s, errstr, errlen);
    if (rc != 0)
        return rc;
    if (s != NULL && s[0] != '\0') {
        ev->channel = cmn_channel_parse(s);
        if (ev->channel == CMN_CHANNEL_NONE)
            return fail(errstr, errlen, "channel", "must be one of email, sms, whatsapp");
    }

    rc = opt_count(obj, "attempt", &ev->attempt, errstr, errlen);
    if (rc == 0)
        rc = opt_count(obj, "hop", &ev->hop, errstr, errlen);
    if (rc == 0)
        rc = opt_string(obj, "request_id", &ev->request_id, errstr, errlen);
    if (rc == 0)
        rc = opt_string(obj, "tenant_id", &ev->tenant_id, errstr, errlen);
    if (rc == 0)
        rc = opt_string(obj, "client_id", &ev->client_id, errstr, errlen);
    if (rc == 0)
        rc = opt_string(obj, "message_type", &ev->message_type, errstr, errlen);
    if (rc == 0)
        rc = opt_string(obj, "provider", &ev->provider, errstr, errlen);
    if (rc == 0)
        rc = opt_string(obj, "provider_message_id", &ev->provider_message_id, errstr, errlen);
    if (rc == 0)
        rc = opt_string(obj, "error_code", &ev->error_code, errstr, errlen);
    if (rc == 0)
        rc = opt_string(obj, "error_message", &ev->error_message, errstr, errlen);
    if (rc == 0)
        rc = opt_string(obj, "reason", &ev->reason, errstr, errlen);
    if (rc != 0)
        return rc;

    if (json_object_object_get_ex(obj, "details", &val) && val != NULL) {
        if (!json_object_is_type(val, json_type_object))
            return fail(errstr, errlen, "details", "must be an object");
        /* The string is cached inside val, so it lives as long as obj. */
        ev->details_json = json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (ev->details_json == NULL)
            return CMN_ERR_NOMEM;
    }

    rc = opt_string(obj, "occurred_at", &s, errstr, errlen);
    if (rc != 0)
        return rc;
    if (s == NULL)
        return fail(errstr, errlen, "occurred_at", "is required");
    if (cmn_time_parse_rfc3339(s, &ev->occurred_at_ms) != 0)
        return fail(errstr, errlen, "occurred_at", "must be an RFC 3339 timestamp");
    return 0;
}
