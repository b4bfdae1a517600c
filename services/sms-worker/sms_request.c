/* sms_request.c - Twilio Messages API request building. See sms_request.h. */
#include "sms_request.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "crm/err.h"
#include "crm/json.h"
#include "crm/uuid.h"

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

int sms_form_encode(cmn_buf_t *out, const char *s)
{
    static const char HEX[] = "0123456789ABCDEF";
    int rc = 0;
    for (const unsigned char *p = (const unsigned char *)s; rc == 0 && *p != '\0'; p++) {
        if (is_unreserved(*p)) {
            rc = cmn_buf_putc(out, (char)*p);
        } else if (*p == ' ') {
            rc = cmn_buf_putc(out, '+');
        } else {
            char esc[3] = {'%', HEX[*p >> 4], HEX[*p & 0x0f]};
            rc = cmn_buf_append(out, esc, sizeof esc);
        }
    }
    return rc;
}

static int present(const char *s)
{
    return s != NULL && s[0] != '\0';
}

int sms_form_add(cmn_buf_t *out, const char *name, const char *value)
{
    int rc = 0;
    if (!present(value))
        return 0;
    if (out->len > 0)
        rc = cmn_buf_putc(out, '&');
    if (rc == 0)
        rc = sms_form_encode(out, name);
    if (rc == 0)
        rc = cmn_buf_putc(out, '=');
    if (rc == 0)
        rc = sms_form_encode(out, value);
    return rc;
}

int sms_request_form(const sms_request_t *r, cmn_buf_t *out)
{
    int rc = 0;
    if (r == NULL || out == NULL || !present(r->to) || (!present(r->from) && !present(r->messaging_service_sid)) ||
        (!present(r->body) && r->n_media == 0) || r->n_media > SMS_MAX_MEDIA ||
        (r->n_media > 0 && r->media_urls == NULL))
        return CMN_ERR_INVALID;
    cmn_buf_reset(out);
    rc = sms_form_add(out, "To", r->to);
    if (rc == 0)
        rc = sms_form_add(out, "From", r->from);
    if (rc == 0)
        rc = sms_form_add(out, "MessagingServiceSid", r->messaging_service_sid);
    if (rc == 0)
        rc = sms_form_add(out, "Body", r->body);
    if (rc == 0)
        rc = sms_form_add(out, "StatusCallback", r->status_callback);
    for (size_t i = 0; rc == 0 && i < r->n_media; i++)
        rc = sms_form_add(out, "MediaUrl", r->media_urls[i]);
    /* An empty form would leave out without storage; callers hand out->data
     * to libcurl, so make sure it is a string. */
    if (rc == 0)
        rc = cmn_buf_puts(out, "");
    return rc;
}

int sms_valid_sid(const char *s, const char *prefix)
{
    if (s == NULL || prefix == NULL || strlen(prefix) != 2 || strlen(s) != 34 || strncmp(s, prefix, 2) != 0)
        return 0;
    for (size_t i = 2; i < 34; i++) {
        unsigned char c = (unsigned char)s[i];
        int hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!hex)
            return 0;
    }
    return 1;
}

int sms_valid_http_url(const char *s)
{
    size_t scheme = 0;
    if (s == NULL)
        return 0;
    if (strncasecmp(s, "https://", 8) == 0)
        scheme = 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        scheme = 7;
    else
        return 0;
    size_t n = strlen(s);
    if (n > SMS_URL_MAX)
        return 0;
    /* A host must follow the scheme: not the path, query or port at once. */
    if (s[scheme] == '\0' || s[scheme] == '/' || s[scheme] == '?' || s[scheme] == '#' || s[scheme] == ':')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '#')
            return 0;
    }
    return 1;
}

int sms_request_url(const char *api_base, const char *account_sid, cmn_buf_t *out)
{
    if (!sms_valid_http_url(api_base) || !sms_valid_sid(account_sid, "AC") || strchr(api_base, '?') != NULL)
        return CMN_ERR_INVALID;
    size_t n = strlen(api_base);
    while (n > 0 && api_base[n - 1] == '/')
        n--;
    cmn_buf_reset(out);
    int rc = cmn_buf_append(out, api_base, n);
    if (rc == 0)
        rc = cmn_buf_printf(out, "/2010-04-01/Accounts/%s/Messages.json", account_sid);
    return rc;
}

int sms_request_callback_url(const char *base, const char *communication_id, int hop, int attempt,
                             cmn_buf_t *out)
{
    if (!sms_valid_http_url(base) || communication_id == NULL || !cmn_uuid_is_valid(communication_id) || hop < 0 ||
        attempt < 0)
        return CMN_ERR_INVALID;
    size_t n = strlen(base);
    /* "https://x/cb?" and "https://x/cb?a=1&" already end in a separator. */
    const char *sep = "?";
    if (strchr(base, '?') != NULL)
        sep = (base[n - 1] == '?' || base[n - 1] == '&') ? "" : "&";
    cmn_buf_reset(out);
    /* A UUID and two integers need no encoding. */
    int rc = cmn_buf_printf(out, "%s%scommunication_id=%s&hop=%d&attempt=%d", base, sep, communication_id, hop,
                            attempt);
    if (rc == 0 && out->len > SMS_URL_MAX)
        rc = CMN_ERR_OVERFLOW;
    return rc;
}

int sms_request_media_urls(json_object *context, const char **urls, size_t max, size_t *n, char *errstr,
                           size_t errlen)
{
    *n = 0;
    if (context == NULL || !json_object_is_type(context, json_type_object) ||
        !cmn_json_has(context, SMS_CONTEXT_MEDIA_URLS))
        return 0;
    json_object *arr = cmn_json_get_array(context, SMS_CONTEXT_MEDIA_URLS);
    if (arr == NULL) {
        snprintf(errstr, errlen, "context." SMS_CONTEXT_MEDIA_URLS " must be an array of URLs");
        return CMN_ERR_INVALID;
    }
    size_t len = json_object_array_length(arr);
    size_t limit = max < SMS_MAX_MEDIA ? max : SMS_MAX_MEDIA;
    if (len > limit) {
        snprintf(errstr, errlen, "context." SMS_CONTEXT_MEDIA_URLS " has %zu items; at most %zu are allowed", len,
                 limit);
        return CMN_ERR_INVALID;
    }
    for (size_t i = 0; i < len; i++) {
        json_object *item = json_object_array_get_idx(arr, i);
        const char *url = json_object_is_type(item, json_type_string) ? json_object_get_string(item) : NULL;
        if (!sms_valid_http_url(url)) {
            snprintf(errstr, errlen, "context." SMS_CONTEXT_MEDIA_URLS "[%zu] must be an http(s) URL", i);
            *n = 0;
            return CMN_ERR_INVALID;
        }
        urls[i] = url;
    }
    *n = len;
    return 0;
}
