/* sms_twilio.c - Twilio response parsing. See sms_twilio.h. */
#include "sms_twilio.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/json.h"

#define REDACTED "<phone>"
#define MIN_PHONE_DIGITS 7

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_group_sep(char c)
{
    return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')';
}

void sms_twilio_redact_numbers(char *s)
{
    if (s == NULL)
        return;
    size_t r = 0, w = 0;
    while (s[r] != '\0') {
        int starts = is_digit(s[r]) || ((s[r] == '+' || s[r] == '(') && is_digit(s[r + 1]));
        /* Only at a word start: the digits of "SM0123456789..." in a SID
         * are not a number. (s[r - 1] is still the original character: the
         * write position never passes the read position.) */
        int word_start = r == 0 || !(is_digit(s[r - 1]) || (s[r - 1] >= 'A' && s[r - 1] <= 'Z') ||
                                     (s[r - 1] >= 'a' && s[r - 1] <= 'z'));
        if (!starts || !word_start) {
            s[w++] = s[r++];
            continue;
        }
        size_t end = r, last_digit = r, digits = 0;
        if (s[end] == '+' || s[end] == '(')
            end++;
        while (is_digit(s[end]) || (is_group_sep(s[end]) && s[end] != '\0')) {
            if (is_digit(s[end])) {
                digits++;
                last_digit = end;
            } else if (!(is_digit(s[end + 1]) || s[end + 1] == '(' || (s[end] == ')' && s[end + 1] == ' '))) {
                break; /* a separator not followed by more of the number ends it */
            }
            end++;
        }
        if (digits >= MIN_PHONE_DIGITS) {
            /* The replacement is never longer than the run it replaces (a
             * run has at least 7 digits), so writing in place is safe. */
            memcpy(s + w, REDACTED, sizeof REDACTED - 1);
            w += sizeof REDACTED - 1;
            r = last_digit + 1;
        } else {
            while (r < end)
                s[w++] = s[r++];
        }
    }
    s[w] = '\0';
}

/* Integer from a JSON number or a numeric string ("num_segments":"2"). */
static int get_long(json_object *obj, const char *key, long *out)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || v == NULL)
        return CMN_ERR_NOTFOUND;
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x < 0 || x > 999999999)
            return CMN_ERR_INVALID;
        *out = (long)x;
        return 0;
    }
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        char *end = NULL;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || x < 0 || x > 999999999)
            return CMN_ERR_INVALID;
        *out = x;
        return 0;
    }
    return CMN_ERR_INVALID;
}

static void copy_text(char *dst, size_t dstlen, const char *src)
{
    snprintf(dst, dstlen, "%s", src != NULL ? src : "");
    /* A provider text becomes one line of a status event. */
    for (char *p = dst; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    }
}

int sms_twilio_parse_error(const char *body, size_t len, sms_twilio_error_t *out)
{
    char why[128];
    int rc = CMN_ERR_PARSE;
    memset(out, 0, sizeof *out);
    if (body == NULL || len == 0)
        return CMN_ERR_PARSE;
    json_object *obj = cmn_json_parse(body, len, why, sizeof why);
    if (obj == NULL || !json_object_is_type(obj, json_type_object))
        goto cleanup;
    long code = 0, status = 0;
    if (get_long(obj, "code", &code) == 0)
        out->code = code;
    if (get_long(obj, "status", &status) == 0)
        out->status = status;
    const char *msg = cmn_json_get_string(obj, "message");
    if (msg == NULL)
        msg = cmn_json_get_string(obj, "detail"); /* RFC 9457 */
    if (msg == NULL)
        msg = cmn_json_get_string(obj, "title");
    copy_text(out->message, sizeof out->message, msg);
    sms_twilio_redact_numbers(out->message);
    copy_text(out->more_info, sizeof out->more_info, cmn_json_get_string(obj, "more_info"));
    if (out->code != 0 || out->message[0] != '\0')
        rc = 0;
cleanup:
    if (obj != NULL)
        json_object_put(obj);
    if (rc != 0)
        memset(out, 0, sizeof *out);
    return rc;
}

static int valid_message_sid(const char *s)
{
    if (s == NULL || strlen(s) != 34 || !((s[0] == 'S' || s[0] == 'M') && s[1] == 'M'))
        return 0;
    for (size_t i = 2; i < 34; i++) {
        char c = s[i];
        if (!(is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

int sms_twilio_parse_created(const char *body, size_t len, sms_twilio_created_t *out)
{
    char why[128];
    int rc = CMN_ERR_PARSE;
    memset(out, 0, sizeof *out);
    out->num_segments = -1;
    if (body == NULL || len == 0)
        return CMN_ERR_PARSE;
    json_object *obj = cmn_json_parse(body, len, why, sizeof why);
    if (obj == NULL || !json_object_is_type(obj, json_type_object))
        goto cleanup;
    const char *sid = cmn_json_get_string(obj, "sid");
    if (!valid_message_sid(sid))
        goto cleanup;
    snprintf(out->sid, sizeof out->sid, "%s", sid);
    copy_text(out->status, sizeof out->status, cmn_json_get_string(obj, "status"));
    long segments = 0;
    if (get_long(obj, "num_segments", &segments) == 0)
        out->num_segments = (int)segments;
    rc = 0;
cleanup:
    if (obj != NULL)
        json_object_put(obj);
    if (rc != 0) {
        memset(out, 0, sizeof *out);
        out->num_segments = -1;
    }
    return rc;
}
