/* wa_twilio.c - Twilio Messages API requests and answers for WhatsApp. See
 * wa_twilio.h. */
#include "wa_twilio.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "crm/err.h"
#include "crm/json.h"
#include "crm/request.h"
#include "wa_content.h"
#include "wa_meta.h"

int wa_form_encode(cmn_buf_t *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        int rc;
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            rc = cmn_buf_putc(out, (char)*p);
        } else if (*p == ' ') {
            rc = cmn_buf_putc(out, '+');
        } else {
            char enc[3] = {'%', hex[*p >> 4], hex[*p & 0x0F]};
            rc = cmn_buf_append(out, enc, sizeof enc);
        }
        if (rc != 0)
            return CMN_ERR_NOMEM;
    }
    return 0;
}

/* Appends name=value (value form-encoded, prefixed with prefix), with '&'
 * before it unless out is empty. An absent value appends nothing. */
static int form_add(cmn_buf_t *out, const char *name, const char *prefix, const char *value)
{
    if (value == NULL || value[0] == '\0')
        return 0;
    int rc = out->len > 0 ? cmn_buf_putc(out, '&') : 0;
    if (rc == 0)
        rc = cmn_buf_puts(out, name);
    if (rc == 0)
        rc = cmn_buf_putc(out, '=');
    if (rc == 0 && prefix != NULL)
        rc = wa_form_encode(out, prefix);
    if (rc == 0)
        rc = wa_form_encode(out, value);
    return rc == 0 ? 0 : CMN_ERR_NOMEM;
}

static int present(const char *s)
{
    return s != NULL && s[0] != '\0';
}

int wa_twilio_form(const wa_twilio_msg_t *m, cmn_buf_t *out, char *errstr, size_t errlen)
{
    cmn_buf_reset(out);
    if (!cmn_valid_e164(m->to) || !cmn_valid_e164(m->from)) {
        snprintf(errstr, errlen, "%s is not an E.164 number", !cmn_valid_e164(m->to) ? "To" : "From");
        return CMN_ERR_INVALID;
    }
    if (present(m->content_sid) && (present(m->body) || present(m->media_url))) {
        snprintf(errstr, errlen, "a Content template cannot carry Body or MediaUrl");
        return CMN_ERR_INVALID;
    }
    if (!present(m->content_sid) && !present(m->body) && !present(m->media_url)) {
        snprintf(errstr, errlen, "the message has no Body, MediaUrl or ContentSid");
        return CMN_ERR_INVALID;
    }
    if (present(m->body) && wa_utf8_chars(m->body) > WA_TWILIO_BODY_MAX) {
        snprintf(errstr, errlen, "the text is longer than %d characters", WA_TWILIO_BODY_MAX);
        return CMN_ERR_INVALID;
    }
    int rc = form_add(out, "To", WA_TWILIO_ADDR_PREFIX, m->to);
    if (rc == 0)
        rc = form_add(out, "From", WA_TWILIO_ADDR_PREFIX, m->from);
    if (rc == 0)
        rc = form_add(out, "Body", NULL, m->body);
    if (rc == 0)
        rc = form_add(out, "MediaUrl", NULL, m->media_url);
    if (rc == 0)
        rc = form_add(out, "ContentSid", NULL, m->content_sid);
    if (rc == 0)
        rc = form_add(out, "ContentVariables", NULL, m->content_variables);
    if (rc == 0)
        rc = form_add(out, "StatusCallback", NULL, m->status_callback);
    if (rc != 0)
        snprintf(errstr, errlen, "out of memory");
    return rc;
}

int wa_twilio_valid_sid(const char *s, const char *prefix)
{
    if (s == NULL || prefix == NULL || strlen(prefix) != 2 || strlen(s) != 34 || strncmp(s, prefix, 2) != 0)
        return 0;
    for (size_t i = 2; i < 34; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

int wa_twilio_url(const char *api_base, const char *account_sid, cmn_buf_t *out)
{
    cmn_buf_reset(out);
    if (!wa_valid_http_url(api_base) || !wa_twilio_valid_sid(account_sid, "AC"))
        return CMN_ERR_INVALID;
    size_t len = strlen(api_base);
    while (len > 0 && api_base[len - 1] == '/')
        len--;
    int rc = cmn_buf_append(out, api_base, len);
    if (rc == 0)
        rc = cmn_buf_printf(out, "/2010-04-01/Accounts/%s/Messages.json", account_sid);
    return rc == 0 ? 0 : CMN_ERR_NOMEM;
}

int wa_twilio_callback_url(const char *base, const char *communication_id, int hop, int attempt, cmn_buf_t *out)
{
    cmn_buf_reset(out);
    if (!wa_valid_http_url(base) || strchr(base, '#') != NULL || communication_id == NULL)
        return CMN_ERR_INVALID;
    int rc = cmn_buf_printf(out, "%s%ccommunication_id=", base, strchr(base, '?') != NULL ? '&' : '?');
    if (rc == 0)
        rc = wa_form_encode(out, communication_id);
    if (rc == 0)
        rc = cmn_buf_printf(out, "&hop=%d&attempt=%d", hop, attempt);
    return rc == 0 ? 0 : CMN_ERR_NOMEM;
}

int wa_twilio_parse_created(const char *body, size_t len, char *sid, size_t sidlen, char *status,
                            size_t statuslen)
{
    char why[128];
    int rc = CMN_ERR_PARSE;
    if (sidlen > 0)
        sid[0] = '\0';
    if (statuslen > 0)
        status[0] = '\0';
    json_object *root = body != NULL && len > 0 ? cmn_json_parse(body, len, why, sizeof why) : NULL;
    const char *s = cmn_json_get_string(root, "sid");
    if ((wa_twilio_valid_sid(s, "SM") || wa_twilio_valid_sid(s, "MM")) && strlen(s) < sidlen) {
        snprintf(sid, sidlen, "%s", s);
        const char *st = cmn_json_get_string(root, "status");
        if (st != NULL && statuslen > 0)
            snprintf(status, statuslen, "%s", st);
        rc = 0;
    }
    json_object_put(root);
    return rc;
}

int wa_twilio_parse_error(const char *body, size_t len, wa_twilio_error_t *out)
{
    char why[128];
    int64_t v = 0;
    int rc = CMN_ERR_PARSE;
    memset(out, 0, sizeof *out);
    json_object *root = body != NULL && len > 0 ? cmn_json_parse(body, len, why, sizeof why) : NULL;
    if (root == NULL || !json_object_is_type(root, json_type_object))
        goto cleanup;
    if (cmn_json_get_int64(root, "code", &v) == 0)
        out->code = (long)v;
    if (cmn_json_get_int64(root, "status", &v) == 0)
        out->status = (long)v;
    const char *msg = cmn_json_get_string(root, "message");
    if (msg == NULL)
        msg = cmn_json_get_string(root, "detail");
    if (msg == NULL)
        msg = cmn_json_get_string(root, "title");
    if (msg != NULL)
        snprintf(out->message, sizeof out->message, "%s", msg);
    const char *info = cmn_json_get_string(root, "more_info");
    if (info != NULL)
        snprintf(out->more_info, sizeof out->more_info, "%s", info);
    wa_redact_numbers(out->message);
    if (out->code != 0 || out->message[0] != '\0')
        rc = 0;
cleanup:
    json_object_put(root);
    return rc;
}
