/* wh_twilio.c - Twilio status callbacks, inbound messages and TwiML. */
#include "wh_twilio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"

#define WHATSAPP_PREFIX "whatsapp:"
#define WH_MAX_COUNTER 1000000

static int fail(char *errstr, size_t errlen, const char *field, const char *reason)
{
    if (errstr != NULL && errlen > 0)
        snprintf(errstr, errlen, "%s: %s", field, reason);
    return CMN_ERR_INVALID;
}

int wh_e164_ok(const char *s)
{
    if (s == NULL || s[0] != '+')
        return 0;
    size_t n = strlen(s + 1);
    if (n < 6 || n > 15 || s[1] == '0')
        return 0;
    return strspn(s + 1, "0123456789") == n ? 1 : 0;
}

static int has_whatsapp_prefix(const char *s)
{
    return s != NULL && strncmp(s, WHATSAPP_PREFIX, sizeof WHATSAPP_PREFIX - 1) == 0;
}

/* A Twilio SID: two letters and 32 hex digits, which is what every message
 * SID looks like; anything else is refused so it never reaches a key. */
static int sid_ok(const char *s)
{
    if (s == NULL || strlen(s) != 34)
        return 0;
    if (!((s[0] >= 'A' && s[0] <= 'Z') && (s[1] >= 'A' && s[1] <= 'Z')))
        return 0;
    return strspn(s + 2, "0123456789abcdefABCDEF") == 32 ? 1 : 0;
}

static int parse_counter(const char *s, int *out)
{
    char *end = NULL;
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return CMN_ERR_INVALID;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > WH_MAX_COUNTER)
        return CMN_ERR_INVALID;
    *out = (int)v;
    return 0;
}

int wh_twilio_status_parse(const wh_form_t *form, const wh_form_t *query, int64_t now_ms, wh_receipt_t *r,
                           char *errstr, size_t errlen)
{
    if (form == NULL || r == NULL)
        return CMN_ERR_INVALID;
    wh_receipt_init(r);
    r->provider = WH_PROVIDER_TWILIO;
    r->provider_message_id = wh_form_get(form, "MessageSid");
    if (r->provider_message_id == NULL)
        r->provider_message_id = wh_form_get(form, "SmsSid");
    if (r->provider_message_id == NULL)
        return fail(errstr, errlen, "MessageSid", "is required");
    if (!sid_ok(r->provider_message_id))
        return fail(errstr, errlen, "MessageSid", "is not a Twilio message SID");
    r->provider_status = wh_form_get(form, "MessageStatus");
    if (r->provider_status == NULL)
        r->provider_status = wh_form_get(form, "SmsStatus");
    if (r->provider_status == NULL || r->provider_status[0] == '\0')
        return fail(errstr, errlen, "MessageStatus", "is required");
    if (strlen(r->provider_status) > 32)
        return fail(errstr, errlen, "MessageStatus", "is too long");
    const char *from = wh_form_get(form, "From");
    const char *to = wh_form_get(form, "To");
    r->channel = has_whatsapp_prefix(from) || has_whatsapp_prefix(to) ? CMN_CHANNEL_WHATSAPP : CMN_CHANNEL_SMS;
    r->error_code = wh_form_get(form, "ErrorCode");
    if (r->error_code != NULL && r->error_code[0] == '\0')
        r->error_code = NULL;
    if (r->error_code != NULL && (strlen(r->error_code) > 16 || strspn(r->error_code, "0123456789") !=
                                                                   strlen(r->error_code)))
        return fail(errstr, errlen, "ErrorCode", "must be a number");
    r->error_message = wh_form_get(form, "ErrorMessage");
    if (r->error_message != NULL && r->error_message[0] == '\0')
        r->error_message = NULL;
    r->occurred_at_ms = now_ms;

    const char *cid = wh_form_get(query, "communication_id");
    if (cid != NULL) {
        if (!cmn_uuid_is_valid(cid))
            return fail(errstr, errlen, "communication_id", "must be a UUID");
        snprintf(r->communication_id, sizeof r->communication_id, "%s", cid);
    }
    const char *hop = wh_form_get(query, "hop");
    if (hop != NULL && parse_counter(hop, &r->hop) != 0)
        return fail(errstr, errlen, "hop", "must be an integer from 0 to 1000000");
    const char *attempt = wh_form_get(query, "attempt");
    if (attempt != NULL && parse_counter(attempt, &r->attempt) != 0)
        return fail(errstr, errlen, "attempt", "must be an integer from 0 to 1000000");
    return 0;
}

static int dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (s == NULL)
        return 0;
    *out = strdup(s);
    return *out != NULL ? 0 : CMN_ERR_NOMEM;
}

int wh_twilio_inbound_parse(const wh_form_t *form, const char *tenant_id, int64_t now_ms, cmn_inbound_t *m,
                            char *errstr, size_t errlen)
{
    int rc = 0;
    if (form == NULL || m == NULL)
        return CMN_ERR_INVALID;
    memset(m, 0, sizeof *m);
    m->v = 1;

    const char *sid = wh_form_get(form, "MessageSid");
    if (sid == NULL)
        sid = wh_form_get(form, "SmsMessageSid");
    if (sid == NULL)
        sid = wh_form_get(form, "SmsSid");
    if (sid == NULL) {
        rc = fail(errstr, errlen, "MessageSid", "is required");
        goto out;
    }
    if (!sid_ok(sid)) {
        rc = fail(errstr, errlen, "MessageSid", "is not a Twilio message SID");
        goto out;
    }
    const char *from = wh_form_get(form, "From");
    if (from == NULL) {
        rc = fail(errstr, errlen, "From", "is required");
        goto out;
    }
    m->channel = CMN_CHANNEL_SMS;
    if (has_whatsapp_prefix(from)) {
        m->channel = CMN_CHANNEL_WHATSAPP;
        from += sizeof WHATSAPP_PREFIX - 1;
    }
    if (!wh_e164_ok(from)) {
        rc = fail(errstr, errlen, "From", "must be an E.164 number (or whatsapp:+E.164)");
        goto out;
    }
    const char *to = wh_form_get(form, "To");
    if (has_whatsapp_prefix(to))
        to += sizeof WHATSAPP_PREFIX - 1;

    rc = dup_opt(tenant_id != NULL ? tenant_id : "default", &m->tenant_id);
    if (rc == 0)
        rc = dup_opt(WH_PROVIDER_TWILIO, &m->provider);
    if (rc == 0)
        rc = dup_opt(sid, &m->provider_message_id);
    if (rc == 0)
        rc = dup_opt(from, &m->from);
    if (rc == 0)
        rc = dup_opt(to, &m->to);
    if (rc == 0)
        rc = dup_opt(wh_form_get(form, "Body"), &m->body);
    if (rc == 0) {
        const char *profile = wh_form_get(form, "ProfileName");
        rc = dup_opt(profile != NULL && profile[0] != '\0' ? profile : NULL, &m->profile_name);
    }
    if (rc != 0)
        goto out;

    const char *payload = wh_form_get(form, "ButtonPayload");
    m->keyword = cmn_inbound_keyword_parse(payload != NULL && payload[0] != '\0' ? payload : m->body);

    const char *num = wh_form_get(form, "NumMedia");
    int n_media = 0;
    if (num != NULL && num[0] != '\0' && parse_counter(num, &n_media) != 0) {
        rc = fail(errstr, errlen, "NumMedia", "must be a non-negative integer");
        goto out;
    }
    if (n_media > CMN_INBOUND_MEDIA_MAX) {
        rc = fail(errstr, errlen, "NumMedia", "is more than 10");
        goto out;
    }
    for (int i = 0; i < n_media; i++) {
        char name[32];
        snprintf(name, sizeof name, "MediaUrl%d", i);
        const char *url = wh_form_get(form, name);
        if (url == NULL || url[0] == '\0') {
            rc = fail(errstr, errlen, name, "is required when NumMedia counts it");
            goto out;
        }
        rc = dup_opt(url, &m->media[m->n_media].url);
        snprintf(name, sizeof name, "MediaContentType%d", i);
        if (rc == 0)
            rc = dup_opt(wh_form_get(form, name), &m->media[m->n_media].content_type);
        m->n_media++;
        if (rc != 0)
            goto out;
    }
    m->received_at_ms = now_ms;
    rc = cmn_inbound_set_event_id(m);
out:
    if (rc != 0)
        cmn_inbound_clear(m);
    return rc;
}

static int xml_escape(cmn_buf_t *out, const char *s)
{
    int rc = 0;
    for (const char *p = s; rc == 0 && *p != '\0'; p++) {
        switch (*p) {
        case '<':
            rc = cmn_buf_puts(out, "&lt;");
            break;
        case '>':
            rc = cmn_buf_puts(out, "&gt;");
            break;
        case '&':
            rc = cmn_buf_puts(out, "&amp;");
            break;
        case '"':
            rc = cmn_buf_puts(out, "&quot;");
            break;
        case '\'':
            rc = cmn_buf_puts(out, "&apos;");
            break;
        default:
            rc = cmn_buf_putc(out, *p);
            break;
        }
    }
    return rc;
}

int wh_twilio_twiml(const char *text, cmn_buf_t *out)
{
    int rc = cmn_buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    if (rc != 0)
        return rc;
    if (text == NULL || text[0] == '\0')
        return cmn_buf_puts(out, "<Response/>");
    rc = cmn_buf_puts(out, "<Response><Message>");
    if (rc == 0)
        rc = xml_escape(out, text);
    if (rc == 0)
        rc = cmn_buf_puts(out, "</Message></Response>");
    return rc;
}
