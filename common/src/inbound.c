/* inbound.c - InboundMessage v1: keyword recognition, event ids and
 * (de)serialisation.
 *
 * The webhook receiver builds these from Twilio and Meta webhooks and the
 * projector reads them back, possibly from a replica of another version, so
 * the wire form is written through json-c (never by hand) and parsing names
 * the first bad field. */
#include "crm/inbound.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crm/err.h"
#include "crm/time.h"
#include "envelope_json.h"

/* The longest keyword is UNSUBSCRIBE (11); anything longer after trimming
 * cannot be a command, which keeps the scan bounded for 1600-char bodies. */
#define KEYWORD_MAX 16

static const struct {
    const char *word;
    cmn_inbound_keyword_t kw;
} KEYWORDS[] = {
    {"stop", CMN_KEYWORD_STOP},   {"stopall", CMN_KEYWORD_STOP},   {"unsubscribe", CMN_KEYWORD_STOP},
    {"cancel", CMN_KEYWORD_STOP}, {"end", CMN_KEYWORD_STOP},       {"quit", CMN_KEYWORD_STOP},
    {"start", CMN_KEYWORD_START}, {"yes", CMN_KEYWORD_START},      {"unstop", CMN_KEYWORD_START},
    {"help", CMN_KEYWORD_HELP},   {"info", CMN_KEYWORD_HELP},
};

const char *cmn_inbound_keyword_name(cmn_inbound_keyword_t k)
{
    switch (k) {
    case CMN_KEYWORD_STOP:
        return "stop";
    case CMN_KEYWORD_START:
        return "start";
    case CMN_KEYWORD_HELP:
        return "help";
    default:
        return NULL;
    }
}

/* White space and punctuation around a command are what people type by
 * accident ("Stop.", " STOP!"); letters and digits are not. */
static int is_trim(unsigned char c)
{
    return isspace(c) || ispunct(c);
}

cmn_inbound_keyword_t cmn_inbound_keyword_parse(const char *body)
{
    if (body == NULL)
        return CMN_KEYWORD_NONE;
    size_t len = strlen(body);
    size_t start = 0;
    while (start < len && is_trim((unsigned char)body[start]))
        start++;
    while (len > start && is_trim((unsigned char)body[len - 1]))
        len--;
    size_t n = len - start;
    if (n == 0 || n > KEYWORD_MAX)
        return CMN_KEYWORD_NONE;
    for (size_t i = 0; i < sizeof KEYWORDS / sizeof KEYWORDS[0]; i++) {
        if (strlen(KEYWORDS[i].word) == n && strncasecmp(KEYWORDS[i].word, body + start, n) == 0)
            return KEYWORDS[i].kw;
    }
    return CMN_KEYWORD_NONE;
}

static cmn_inbound_keyword_t keyword_from_name(const char *s)
{
    if (s == NULL)
        return CMN_KEYWORD_NONE;
    if (strcmp(s, "stop") == 0)
        return CMN_KEYWORD_STOP;
    if (strcmp(s, "start") == 0)
        return CMN_KEYWORD_START;
    if (strcmp(s, "help") == 0)
        return CMN_KEYWORD_HELP;
    return (cmn_inbound_keyword_t)-1;
}

int cmn_inbound_set_event_id(cmn_inbound_t *m)
{
    if (m == NULL || m->provider == NULL || m->provider[0] == '\0' || m->provider_message_id == NULL ||
        m->provider_message_id[0] == '\0')
        return CMN_ERR_INVALID;
    /* "inbound|" keeps these ids apart from status event ids built from the
     * same provider message id in the same namespace. The exact input is
     * part of the wire contract. */
    cmn_buf_t name = CMN_BUF_INIT;
    int rc = cmn_buf_printf(&name, "inbound|%s|%s", m->provider, m->provider_message_id);
    if (rc == 0)
        rc = cmn_uuid_v5(CMN_UUID_NS_EVENT, name.data, name.len, m->event_id);
    cmn_buf_free(&name);
    return rc;
}

int cmn_inbound_to_json(const cmn_inbound_t *m, cmn_buf_t *out)
{
    if (m == NULL || out == NULL || (m->channel != CMN_CHANNEL_SMS && m->channel != CMN_CHANNEL_WHATSAPP))
        return CMN_ERR_INVALID;
    json_object *o = json_object_new_object();
    if (o == NULL)
        return CMN_ERR_NOMEM;
    int rc = env_put_int(o, "v", 1, 0);
    rc = env_put_str(o, "event_id", m->event_id, rc);
    rc = env_put_str(o, "tenant_id", m->tenant_id != NULL ? m->tenant_id : "default", rc);
    rc = env_put_str(o, "channel", cmn_channel_name(m->channel), rc);
    rc = env_put_str(o, "provider", m->provider, rc);
    rc = env_put_str(o, "provider_message_id", m->provider_message_id, rc);
    rc = env_put_str(o, "from", m->from, rc);
    rc = env_put_str(o, "to", m->to, rc);
    rc = env_put_str(o, "body", m->body, rc);
    rc = env_put_str(o, "keyword", cmn_inbound_keyword_name(m->keyword), rc);
    if (rc == 0 && m->n_media > 0) {
        json_object *arr = json_object_new_array();
        for (size_t i = 0; arr != NULL && rc == 0 && i < m->n_media && i < CMN_INBOUND_MEDIA_MAX; i++) {
            json_object *item = json_object_new_object();
            if (item == NULL) {
                rc = CMN_ERR_NOMEM;
                break;
            }
            rc = env_put_str(item, "url", m->media[i].url, rc);
            rc = env_put_str(item, "content_type", m->media[i].content_type, rc);
            if (rc != 0 || json_object_array_add(arr, item) != 0) {
                json_object_put(item);
                rc = rc != 0 ? rc : CMN_ERR_NOMEM;
            }
        }
        rc = env_put_obj(o, "media", arr, rc);
    }
    rc = env_put_str(o, "profile_name", m->profile_name, rc);
    rc = env_put_time(o, "received_at", m->received_at_ms, rc);
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

/* Copies an optional string member into *dst (NULL when absent or null).
 * required makes absence (or "") an error. */
static int take_string(json_object *obj, const char *key, int required, char **dst, char *errstr, size_t errlen)
{
    json_object *val = NULL;
    *dst = NULL;
    if (!json_object_object_get_ex(obj, key, &val) || val == NULL)
        return required ? fail(errstr, errlen, key, "is required") : 0;
    if (!json_object_is_type(val, json_type_string))
        return fail(errstr, errlen, key, "must be a string");
    const char *s = json_object_get_string(val);
    if (required && s[0] == '\0')
        return fail(errstr, errlen, key, "must not be empty");
    *dst = strdup(s);
    return *dst != NULL ? 0 : CMN_ERR_NOMEM;
}

static int parse_media(json_object *obj, cmn_inbound_t *m, char *errstr, size_t errlen)
{
    json_object *arr = NULL;
    if (!json_object_object_get_ex(obj, "media", &arr) || arr == NULL)
        return 0;
    if (!json_object_is_type(arr, json_type_array))
        return fail(errstr, errlen, "media", "must be an array");
    size_t n = json_object_array_length(arr);
    if (n > CMN_INBOUND_MEDIA_MAX)
        return fail(errstr, errlen, "media", "has too many items");
    for (size_t i = 0; i < n; i++) {
        json_object *item = json_object_array_get_idx(arr, i);
        char field[32];
        snprintf(field, sizeof field, "media[%zu]", i);
        if (item == NULL || !json_object_is_type(item, json_type_object))
            return fail(errstr, errlen, field, "must be an object");
        int rc = take_string(item, "url", 1, &m->media[i].url, errstr, errlen);
        if (rc == 0)
            rc = take_string(item, "content_type", 0, &m->media[i].content_type, errstr, errlen);
        m->n_media = i + 1;
        if (rc != 0)
            return rc;
    }
    return 0;
}

int cmn_inbound_from_json(json_object *obj, cmn_inbound_t *m, char *errstr, size_t errlen)
{
    json_object *val = NULL;
    char *s = NULL;
    int rc = 0;

    if (m == NULL)
        return CMN_ERR_INVALID;
    memset(m, 0, sizeof *m);
    if (obj == NULL || !json_object_is_type(obj, json_type_object)) {
        rc = fail(errstr, errlen, "message", "must be a JSON object");
        goto out;
    }
    if (json_object_object_get_ex(obj, "v", &val) && val != NULL &&
        (!json_object_is_type(val, json_type_int) || json_object_get_int64(val) != 1)) {
        rc = fail(errstr, errlen, "v", "unsupported version: this service understands v 1");
        goto out;
    }
    m->v = 1;

    rc = take_string(obj, "event_id", 1, &s, errstr, errlen);
    if (rc != 0)
        goto out;
    if (!cmn_uuid_is_valid(s)) {
        rc = fail(errstr, errlen, "event_id", "must be a UUID");
        goto out;
    }
    snprintf(m->event_id, sizeof m->event_id, "%s", s);
    free(s);
    s = NULL;

    rc = take_string(obj, "channel", 1, &s, errstr, errlen);
    if (rc != 0)
        goto out;
    m->channel = cmn_channel_parse(s);
    if (m->channel != CMN_CHANNEL_SMS && m->channel != CMN_CHANNEL_WHATSAPP) {
        rc = fail(errstr, errlen, "channel", "must be sms or whatsapp");
        goto out;
    }
    free(s);
    s = NULL;

    rc = take_string(obj, "tenant_id", 0, &m->tenant_id, errstr, errlen);
    if (rc == 0 && m->tenant_id == NULL) {
        m->tenant_id = strdup("default");
        rc = m->tenant_id != NULL ? 0 : CMN_ERR_NOMEM;
    }
    if (rc == 0 && m->tenant_id[0] == '\0')
        rc = fail(errstr, errlen, "tenant_id", "must not be empty");
    if (rc == 0)
        rc = take_string(obj, "provider", 1, &m->provider, errstr, errlen);
    if (rc == 0)
        rc = take_string(obj, "provider_message_id", 1, &m->provider_message_id, errstr, errlen);
    if (rc == 0)
        rc = take_string(obj, "from", 1, &m->from, errstr, errlen);
    if (rc == 0)
        rc = take_string(obj, "to", 0, &m->to, errstr, errlen);
    if (rc == 0)
        rc = take_string(obj, "body", 0, &m->body, errstr, errlen);
    if (rc == 0)
        rc = take_string(obj, "profile_name", 0, &m->profile_name, errstr, errlen);
    if (rc != 0)
        goto out;

    rc = take_string(obj, "keyword", 0, &s, errstr, errlen);
    if (rc != 0)
        goto out;
    if (s != NULL) {
        cmn_inbound_keyword_t k = keyword_from_name(s);
        if ((int)k < 0) {
            rc = fail(errstr, errlen, "keyword", "must be stop, start or help");
            goto out;
        }
        m->keyword = k;
        free(s);
        s = NULL;
    }

    rc = parse_media(obj, m, errstr, errlen);
    if (rc != 0)
        goto out;

    rc = take_string(obj, "received_at", 1, &s, errstr, errlen);
    if (rc != 0)
        goto out;
    if (cmn_time_parse_rfc3339(s, &m->received_at_ms) != 0)
        rc = fail(errstr, errlen, "received_at", "must be an RFC 3339 timestamp");

out:
    free(s);
    if (rc != 0)
        cmn_inbound_clear(m);
    return rc;
}

int cmn_inbound_key(const cmn_inbound_t *m, char *out, size_t outlen)
{
    if (m == NULL || out == NULL || m->from == NULL)
        return CMN_ERR_INVALID;
    int n = snprintf(out, outlen, "%s:%s", m->tenant_id != NULL ? m->tenant_id : "default", m->from);
    if (n < 0 || (size_t)n >= outlen)
        return CMN_ERR_OVERFLOW;
    return 0;
}

void cmn_inbound_clear(cmn_inbound_t *m)
{
    if (m == NULL)
        return;
    free(m->tenant_id);
    free(m->provider);
    free(m->provider_message_id);
    free(m->from);
    free(m->to);
    free(m->body);
    free(m->profile_name);
    for (size_t i = 0; i < m->n_media && i < CMN_INBOUND_MEDIA_MAX; i++) {
        free(m->media[i].url);
        free(m->media[i].content_type);
    }
    memset(m, 0, sizeof *m);
}
