/* request.c - CommunicationRequest v1: validation, normalisation, serialisation.
 *
 * Validation never stops at the first problem: a caller fixing a rejected
 * batch should see every bad field at once, named by a JSON-path-like string
 * ("requests[2].recipient.phone"). Each check below therefore records an
 * error and carries on with the next field. The only early exit is running
 * out of memory. */
#include "crm/request.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/ucal.h>
#include <unicode/ustring.h>
#include <unicode/utypes.h>

#include "crm/dispatch.h"
#include "crm/err.h"
#include "crm/time.h"
#include "envelope_json.h"

#define MAX_MESSAGE_TYPE 64
#define MAX_TIMEZONE 64
#define MAX_LOCALE 35
#define MAX_FILENAME 255
#define MAX_CONTENT_TYPE 127
#define MAX_EMAIL_LOCAL 64

/* ------------------------------------------------------------ error list */

/* The state of one validation pass: where errors go and how many were found. */
typedef struct vctx {
    json_object *errors; /* borrowed; may be NULL when the caller only wants a verdict */
    const char *prefix;  /* prepended to every field name */
    int nerr;
    int rc;              /* CMN_ERR_NOMEM once an allocation failed, else 0 */
} vctx_t;

/* Records one bad field. An empty field names the object the prefix points
 * at (the prefix without its trailing dot), so "requests[2]" can be reported
 * when the element itself is not an object. */
static void verr(vctx_t *v, const char *field, const char *reason)
{
    char path[384];
    v->nerr++;
    if (v->errors == NULL)
        return;
    if (field[0] != '\0') {
        snprintf(path, sizeof path, "%s%s", v->prefix, field);
    } else {
        size_t n = strlen(v->prefix);
        if (n > 0 && v->prefix[n - 1] == '.')
            n--;
        if (n == 0)
            snprintf(path, sizeof path, "request");
        else
            snprintf(path, sizeof path, "%.*s", (int)n, v->prefix);
    }
    json_object *e = json_object_new_object();
    int rc = env_put_str(e, "field", path, e == NULL ? CMN_ERR_NOMEM : 0);
    rc = env_put_str(e, "reason", reason, rc);
    if (rc == 0 && json_object_array_add(v->errors, e) == 0)
        return;
    json_object_put(e);
    v->rc = CMN_ERR_NOMEM;
}

/* verr with a printf-formatted field name ("channels[2]"). */
static void verrf(vctx_t *v, const char *reason, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void verrf(vctx_t *v, const char *reason, const char *fmt, ...)
{
    char field[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(field, sizeof field, fmt, ap);
    va_end(ap);
    verr(v, field, reason);
}

/* ------------------------------------------------------ typed accessors */

enum { F_ABSENT = 0, F_PRESENT = 1, F_BAD = -1 };

/* Looks key up. JSON null counts as absent, so producers that serialise
 * unset optional fields as null are accepted. */
static json_object *lookup(json_object *obj, const char *key)
{
    json_object *val = NULL;
    if (!json_object_object_get_ex(obj, key, &val))
        return NULL;
    return val;
}

/* Fetches a string member. Returns F_PRESENT with *out borrowed from obj,
 * F_ABSENT, or F_BAD after recording why (wrong type, embedded NUL: a NUL
 * would silently truncate the value everywhere C strings are used). */
static int get_string(vctx_t *v, json_object *obj, const char *key, const char *field, const char **out)
{
    json_object *val = lookup(obj, key);
    *out = NULL;
    if (val == NULL)
        return F_ABSENT;
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

/* Copies s into *dst (freeing nothing: *dst is NULL in a zeroed struct). */
static void dup_into(vctx_t *v, char **dst, const char *s)
{
    if (s == NULL)
        return;
    *dst = strdup(s);
    if (*dst == NULL)
        v->rc = CMN_ERR_NOMEM;
}

/* ------------------------------------------------------------ validators */

int cmn_valid_id(const char *s, size_t max)
{
    if (s == NULL)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e)
            return 0;
    }
    return 1;
}

int cmn_valid_e164(const char *s)
{
    if (s == NULL || s[0] != '+')
        return 0;
    size_t n = strlen(s + 1);
    if (n < 2 || n > 15 || s[1] < '1' || s[1] > '9')
        return 0;
    for (size_t i = 1; i <= n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return 1;
}

/* RFC 5322 atext: the characters allowed in a dot-atom besides the dots. */
static int is_atext(unsigned char c)
{
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

int cmn_valid_email(const char *s)
{
    if (s == NULL)
        return 0;
    size_t n = strlen(s);
    const char *at = strrchr(s, '@');
    if (n > CMN_REQ_MAX_EMAIL || at == NULL)
        return 0;
    size_t local_len = (size_t)(at - s);
    if (local_len == 0 || local_len > MAX_EMAIL_LOCAL)
        return 0;
    /* Local part: a dot-atom. Quoted local parts are legal but practically
     * unused and a source of header-injection bugs, so they are refused. */
    int prev_dot = 1;
    for (size_t i = 0; i < local_len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (prev_dot)
                return 0;
            prev_dot = 1;
        } else if (is_atext(c)) {
            prev_dot = 0;
        } else {
            return 0;
        }
    }
    if (prev_dot)
        return 0;
    /* Domain: at least two LDH labels of 1..63 characters, no leading or
     * trailing hyphen, and a top-level label that is not all digits (so a
     * bare IPv4 address is not mistaken for a domain). */
    const char *d = at + 1;
    size_t dn = strlen(d);
    if (dn == 0 || dn > 253)
        return 0;
    size_t labels = 0, label_len = 0;
    int label_all_digits = 1;
    for (size_t i = 0; i <= dn; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.' || c == '\0') {
            if (label_len == 0 || label_len > 63 || d[i - 1] == '-')
                return 0;
            labels++;
            if (c == '\0' && label_all_digits)
                return 0;
            label_len = 0;
            label_all_digits = 1;
            continue;
        }
        if (!isalnum(c) && c != '-')
            return 0;
        if (c == '-' && label_len == 0)
            return 0;
        if (!isdigit(c))
            label_all_digits = 0;
        label_len++;
    }
    return labels >= 2;
}

int cmn_valid_timezone(const char *s)
{
    static const char unknown[] = "Etc/Unknown";
    UChar id[MAX_TIMEZONE + 1];
    UChar canon[128];
    if (s == NULL)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > MAX_TIMEZONE || strcmp(s, unknown) == 0)
        return 0;
    /* IANA ids are plain ASCII; anything else cannot be one, and checking
     * here makes the byte-to-UChar widening below exact. */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e)
            return 0;
        id[i] = (UChar)c;
    }
    UErrorCode status = U_ZERO_ERROR;
    UBool is_system = 0;
    int32_t len = ucal_getCanonicalTimeZoneID(id, (int32_t)n, canon, (int32_t)(sizeof canon / sizeof canon[0]),
                                              &is_system, &status);
    /* is_system is false for custom ids such as "GMT+05:00", which ICU
     * accepts but which are not IANA zones and have no DST rules. */
    if (U_FAILURE(status) || !is_system || len <= 0)
        return 0;
    /* ICU answers "Etc/Unknown" for ids it does not know in some versions
     * instead of failing; that zone is a placeholder, never a real one. */
    if (len == (int32_t)(sizeof unknown - 1)) {
        int same = 1;
        for (int32_t i = 0; i < len; i++) {
            if (canon[i] != (UChar)unknown[i])
                same = 0;
        }
        if (same)
            return 0;
    }
    return 1;
}

int cmn_locale_normalize(const char *s, char *out, size_t outlen)
{
    if (s == NULL || out == NULL)
        return CMN_ERR_INVALID;
    size_t n = strlen(s);
    if (n == 0 || n > MAX_LOCALE || outlen <= n)
        return CMN_ERR_INVALID;
    /* The grammar is the common subset of BCP 47: language (2-3 letters),
     * optional script (4 letters), optional region (2 letters or 3 digits),
     * then variants (5-8 alphanumerics, or a digit and 3 alphanumerics).
     * Extensions and private use subtags are refused: no template is
     * selected by them. Subtags must come in this order. */
    enum { S_LANG, S_SCRIPT, S_REGION, S_VARIANT } stage = S_LANG;
    size_t i = 0;
    while (i < n) {
        size_t start = i, len = 0, alpha = 0, digit = 0;
        while (i < n && s[i] != '-') {
            unsigned char c = (unsigned char)s[i];
            if (isalpha(c) && c < 0x80)
                alpha++;
            else if (isdigit(c))
                digit++;
            else
                return CMN_ERR_INVALID;
            i++;
            len++;
        }
        if (len == 0)
            return CMN_ERR_INVALID;
        int kind; /* 0 lower, 1 title, 2 upper */
        if (start == 0) {
            if (alpha != len || len < 2 || len > 3)
                return CMN_ERR_INVALID;
            kind = 0;
        } else if (stage < S_SCRIPT && len == 4 && alpha == 4) {
            stage = S_SCRIPT;
            kind = 1;
        } else if (stage < S_REGION && ((len == 2 && alpha == 2) || (len == 3 && digit == 3))) {
            stage = S_REGION;
            kind = 2;
        } else if ((len >= 5 && len <= 8) || (len == 4 && isdigit((unsigned char)s[start]))) {
            stage = S_VARIANT;
            kind = 0;
        } else {
            return CMN_ERR_INVALID;
        }
        for (size_t k = start; k < start + len; k++) {
            unsigned char c = (unsigned char)s[k];
            int upper = kind == 2 || (kind == 1 && k == start);
            out[k] = (char)(upper ? toupper(c) : tolower(c));
        }
        if (i < n) {
            out[i] = '-';
            i++;
            if (i == n)
                return CMN_ERR_INVALID; /* trailing hyphen */
        }
    }
    out[n] = '\0';
    return 0;
}

int cmn_valid_locale(const char *s)
{
    char tmp[MAX_LOCALE + 1];
    return cmn_locale_normalize(s, tmp, sizeof tmp) == 0;
}

/* 1 when s is well-formed UTF-8 without control characters (C0, DEL, C1).
 * Names and file names end up in email headers, where a CR or LF would let
 * user data inject headers. */
static int valid_text(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        unsigned c = *p;
        unsigned cp;
        int extra;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return 0;
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            cp = c & 0x1f;
            extra = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            cp = c & 0x0f;
            extra = 2;
        } else if (c >= 0xf0 && c <= 0xf4) {
            cp = c & 0x07;
            extra = 3;
        } else {
            return 0;
        }
        p++;
        for (int k = 0; k < extra; k++) {
            if ((p[k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[k] & 0x3f);
        }
        /* Overlong forms, surrogates and code points past U+10FFFF. */
        if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
            return 0;
        p += extra;
    }
    return 1;
}

/* [a-z0-9_.-]{1,64}, not starting with a dot. The message type names a
 * template directory, so "." and ".." must never be accepted. */
int cmn_valid_message_type(const char *s)
{
    if (s == NULL)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > MAX_MESSAGE_TYPE || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* [A-Za-z0-9_.-]{1,128}, not starting with a dot: template names are looked
 * up as files and as provider template names (Meta, Twilio ContentSid). */
int cmn_valid_template_name(const char *s)
{
    if (s == NULL)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > CMN_REQ_MAX_ID || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* RFC 6838 restricted-name: an alphanumeric then up to 126 of
 * ALPHA DIGIT ! # $ & - ^ _ . +  */
static size_t media_token_len(const char *s)
{
    size_t i = 0;
    if (!isalnum((unsigned char)s[0]))
        return 0;
    while (s[i] != '\0' && (isalnum((unsigned char)s[i]) || strchr("!#$&-^_.+", s[i]) != NULL))
        i++;
    return i;
}

static int valid_content_type(const char *s)
{
    if (strlen(s) > MAX_CONTENT_TYPE)
        return 0;
    size_t t = media_token_len(s);
    if (t == 0 || s[t] != '/')
        return 0;
    size_t st = media_token_len(s + t + 1);
    return st > 0 && s[t + 1 + st] == '\0';
}

/* Standard base64 with padding and no whitespace. Returns the decoded size
 * in *decoded, or -1 when s is not base64. Counting instead of decoding keeps
 * validation of a 10 MiB attachment allocation-free. */
static int base64_decoded_len(const char *s, size_t n, size_t *decoded)
{
    if (n % 4 != 0)
        return -1;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '=') {
            if (i + 2 < n)
                return -1;
            pad++;
        } else if (pad > 0 || !(isalnum(c) || c == '+' || c == '/')) {
            return -1;
        }
    }
    *decoded = n / 4 * 3 - pad;
    return 0;
}

/* ------------------------------------------------------------ recipient */

static const char *const RECIPIENT_FIELDS[] = {"name",     "email",  "phone", "whatsapp",
                                               "timezone", "locale", "preferred_channels", NULL};
static const char *const ATTACHMENT_FIELDS[] = {"filename", "content_type", "content_base64", NULL};
static const char *const REQUEST_FIELDS[] = {
    "v",       "request_id",  "tenant_id",  "client_id",  "plan_id",          "message_type",
    "urgency", "recipient",   "channels",   "template",   "context",          "attachments",
    "send_after", "expires_at", "communication_id", "received_at", NULL};

static int in_list(const char *const *list, const char *key)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (strcmp(list[i], key) == 0)
            return 1;
    }
    return 0;
}

/* Unknown members are refused: the schema is closed so that a typo such as
 * "phon" is reported instead of silently dropping the address. */
static void check_unknown(vctx_t *v, json_object *obj, const char *const *known, const char *field_prefix)
{
    json_object_object_foreach(obj, key, member)
    {
        (void)member;
        if (!in_list(known, key))
            verrf(v, "unknown field", "%s%s", field_prefix, key);
    }
}

/* Parses an array of unique channel names into out[]/n. name is the field
 * name for errors. allow_empty: preferred_channels may be [], an explicit
 * channels list may not (it would leave the router nothing to send on). */
static void parse_channel_list(vctx_t *v, json_object *arr, const char *name, int allow_empty,
                               cmn_channel_t out[CMN_CHANNEL__COUNT], size_t *n)
{
    *n = 0;
    if (!json_object_is_type(arr, json_type_array)) {
        verr(v, name, "must be an array of channel names (email, sms, whatsapp)");
        return;
    }
    size_t len = json_object_array_length(arr);
    if (len == 0 && !allow_empty) {
        verr(v, name, "must list at least one channel (omit it to let the router choose)");
        return;
    }
    for (size_t i = 0; i < len; i++) {
        json_object *el = json_object_array_get_idx(arr, i);
        if (el == NULL || !json_object_is_type(el, json_type_string)) {
            verrf(v, "must be a string", "%s[%zu]", name, i);
            continue;
        }
        cmn_channel_t c = cmn_channel_parse(json_object_get_string(el));
        if (c == CMN_CHANNEL_NONE) {
            verrf(v, "must be one of email, sms, whatsapp", "%s[%zu]", name, i);
            continue;
        }
        int dup = 0;
        for (size_t k = 0; k < *n; k++) {
            if (out[k] == c)
                dup = 1;
        }
        if (dup) {
            verrf(v, "is listed more than once", "%s[%zu]", name, i);
            continue;
        }
        out[(*n)++] = c;
    }
}

/* Validates the recipient members with field names relative to v->prefix. */
static void parse_recipient(vctx_t *v, json_object *obj, const char *rp, cmn_recipient_t *r)
{
    char field[64];
    const char *s = NULL;
    int addresses = 0;

    if (!json_object_is_type(obj, json_type_object)) {
        snprintf(field, sizeof field, "%.*s", rp[0] != '\0' ? (int)strlen(rp) - 1 : 0, rp);
        verr(v, field, "must be an object");
        return;
    }

    snprintf(field, sizeof field, "%sname", rp);
    if (get_string(v, obj, "name", field, &s) == F_PRESENT) {
        if (s[0] == '\0' || strlen(s) > CMN_REQ_MAX_NAME || !valid_text(s))
            verr(v, field, "must be 1-256 bytes of UTF-8 text without control characters");
        else
            dup_into(v, &r->name, s);
    }

    snprintf(field, sizeof field, "%semail", rp);
    if (get_string(v, obj, "email", field, &s) != F_ABSENT)
        addresses++;
    if (s != NULL) {
        if (!cmn_valid_email(s))
            verr(v, field, "must be an email address like ana@example.com (at most 254 characters)");
        else
            dup_into(v, &r->email, s);
    }

    snprintf(field, sizeof field, "%sphone", rp);
    if (get_string(v, obj, "phone", field, &s) != F_ABSENT)
        addresses++;
    if (s != NULL) {
        if (!cmn_valid_e164(s))
            verr(v, field, "must be an E.164 number like +14155550100");
        else
            dup_into(v, &r->phone, s);
    }

    snprintf(field, sizeof field, "%swhatsapp", rp);
    if (get_string(v, obj, "whatsapp", field, &s) != F_ABSENT)
        addresses++;
    if (s != NULL) {
        if (!cmn_valid_e164(s))
            verr(v, field, "must be an E.164 number like +14155550100");
        else
            dup_into(v, &r->whatsapp, s);
    }

    snprintf(field, sizeof field, "%stimezone", rp);
    if (get_string(v, obj, "timezone", field, &s) == F_PRESENT) {
        if (!cmn_valid_timezone(s))
            verr(v, field, "must be an IANA time zone like Europe/Paris");
        else
            dup_into(v, &r->timezone, s);
    }

    snprintf(field, sizeof field, "%slocale", rp);
    if (get_string(v, obj, "locale", field, &s) == F_PRESENT) {
        char canon[MAX_LOCALE + 1];
        if (cmn_locale_normalize(s, canon, sizeof canon) != 0)
            verr(v, field, "must be a BCP 47 language tag like en, fr-CA or pt-BR");
        else
            dup_into(v, &r->locale, canon);
    }

    json_object *pref = lookup(obj, "preferred_channels");
    if (pref != NULL) {
        snprintf(field, sizeof field, "%spreferred_channels", rp);
        parse_channel_list(v, pref, field, 1, r->preferred, &r->n_preferred);
    }

    /* Only complain about a missing address when none was even attempted:
     * a bad phone is already reported and a second error would mislead. */
    if (addresses == 0) {
        snprintf(field, sizeof field, "%.*s", rp[0] != '\0' ? (int)strlen(rp) - 1 : 0, rp);
        verr(v, field, "must have at least one of email, phone, whatsapp");
    }
    check_unknown(v, obj, RECIPIENT_FIELDS, rp);
}

int cmn_recipient_from_json(json_object *obj, const char *prefix, cmn_recipient_t *out, json_object *errors)
{
    if (out == NULL)
        return CMN_ERR_INVALID;
    vctx_t v = {errors, prefix != NULL ? prefix : "", 0, 0};
    if (obj == NULL) {
        verr(&v, "", "is required");
        return v.rc != 0 ? v.rc : CMN_ERR_INVALID;
    }
    parse_recipient(&v, obj, "", out);
    if (v.rc != 0)
        return v.rc;
    return v.nerr > 0 ? CMN_ERR_INVALID : 0;
}

static json_object *channel_array(const cmn_channel_t *c, size_t n)
{
    json_object *arr = json_object_new_array();
    for (size_t i = 0; arr != NULL && i < n; i++) {
        json_object *s = json_object_new_string(cmn_channel_name(c[i]));
        if (s == NULL || json_object_array_add(arr, s) != 0) {
            json_object_put(s);
            json_object_put(arr);
            arr = NULL;
        }
    }
    return arr;
}

json_object *cmn_recipient_to_json_object(const cmn_recipient_t *r)
{
    json_object *o = json_object_new_object();
    if (o == NULL)
        return NULL;
    int rc = env_put_str(o, "name", r->name, 0);
    rc = env_put_str(o, "email", r->email, rc);
    rc = env_put_str(o, "phone", r->phone, rc);
    rc = env_put_str(o, "whatsapp", r->whatsapp, rc);
    rc = env_put_str(o, "timezone", r->timezone, rc);
    rc = env_put_str(o, "locale", r->locale, rc);
    if (r->n_preferred > 0)
        rc = env_put_obj(o, "preferred_channels", channel_array(r->preferred, r->n_preferred), rc);
    if (rc != 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

const char *cmn_recipient_address(const cmn_recipient_t *r, cmn_channel_t c)
{
    if (r == NULL)
        return NULL;
    /* WhatsApp deliberately does not fall back to phone: a WhatsApp account
     * is a separate opt-in address, and guessing it would message people on
     * a channel they never gave us. */
    switch (c) {
    case CMN_CHANNEL_EMAIL:
        return r->email;
    case CMN_CHANNEL_SMS:
        return r->phone;
    case CMN_CHANNEL_WHATSAPP:
        return r->whatsapp;
    default:
        return NULL;
    }
}

static int dup_opt(char **dst, const char *src)
{
    if (src == NULL)
        return 0;
    *dst = strdup(src);
    return *dst != NULL ? 0 : CMN_ERR_NOMEM;
}

int cmn_recipient_copy(cmn_recipient_t *dst, const cmn_recipient_t *src)
{
    if (dst == NULL || src == NULL)
        return CMN_ERR_INVALID;
    int rc = dup_opt(&dst->name, src->name);
    if (rc == 0)
        rc = dup_opt(&dst->email, src->email);
    if (rc == 0)
        rc = dup_opt(&dst->phone, src->phone);
    if (rc == 0)
        rc = dup_opt(&dst->whatsapp, src->whatsapp);
    if (rc == 0)
        rc = dup_opt(&dst->timezone, src->timezone);
    if (rc == 0)
        rc = dup_opt(&dst->locale, src->locale);
    if (rc != 0) {
        cmn_recipient_clear(dst);
        return rc;
    }
    memcpy(dst->preferred, src->preferred, sizeof dst->preferred);
    dst->n_preferred = src->n_preferred;
    return 0;
}

void cmn_recipient_clear(cmn_recipient_t *r)
{
    if (r == NULL)
        return;
    free(r->name);
    free(r->email);
    free(r->phone);
    free(r->whatsapp);
    free(r->timezone);
    free(r->locale);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------- attachments */

static void parse_attachments(vctx_t *v, json_object *arr)
{
    if (!json_object_is_type(arr, json_type_array)) {
        verr(v, "attachments", "must be an array of {filename, content_type, content_base64} objects");
        return;
    }
    size_t n = json_object_array_length(arr);
    if (n > CMN_REQ_MAX_ATTACHMENTS)
        verr(v, "attachments", "must have at most 10 attachments");
    for (size_t i = 0; i < n; i++) {
        char field[64];
        const char *s = NULL;
        json_object *a = json_object_array_get_idx(arr, i);
        if (a == NULL || !json_object_is_type(a, json_type_object)) {
            verrf(v, "must be an object", "attachments[%zu]", i);
            continue;
        }

        snprintf(field, sizeof field, "attachments[%zu].filename", i);
        int got = get_string(v, a, "filename", field, &s);
        if (got == F_ABSENT)
            verr(v, field, "is required");
        if (s != NULL && (s[0] == '\0' || strlen(s) > MAX_FILENAME || !valid_text(s) ||
                          strpbrk(s, "/\\") != NULL || strcmp(s, ".") == 0 || strcmp(s, "..") == 0))
            verr(v, field, "must be a file name of 1-255 bytes without path separators or control characters");

        snprintf(field, sizeof field, "attachments[%zu].content_type", i);
        got = get_string(v, a, "content_type", field, &s);
        if (got == F_ABSENT)
            verr(v, field, "is required");
        if (s != NULL && !valid_content_type(s))
            verr(v, field, "must be a media type like application/pdf (type/subtype, no parameters)");

        snprintf(field, sizeof field, "attachments[%zu].content_base64", i);
        got = get_string(v, a, "content_base64", field, &s);
        if (got == F_ABSENT)
            verr(v, field, "is required");
        if (s != NULL) {
            size_t decoded = 0;
            if (base64_decoded_len(s, strlen(s), &decoded) != 0)
                verr(v, field, "must be standard base64 with padding and no line breaks");
            else if (decoded > CMN_REQ_MAX_ATTACHMENT_BYTES)
                verr(v, field, "must decode to at most 10 MiB");
        }

        snprintf(field, sizeof field, "attachments[%zu].", i);
        check_unknown(v, a, ATTACHMENT_FIELDS, field);
    }
}

/* --------------------------------------------------------------- request */

/* An optional RFC 3339 member into *ms (left 0 when absent or bad). */
static void parse_time(vctx_t *v, json_object *obj, const char *key, int64_t *ms)
{
    const char *s = NULL;
    if (get_string(v, obj, key, key, &s) != F_PRESENT)
        return;
    if (cmn_time_parse_rfc3339(s, ms) != 0) {
        *ms = 0;
        verr(v, key, "must be an RFC 3339 timestamp like 2026-11-22T09:30:00Z");
    }
}

/* A required or optional identifier: printable ASCII, 1..CMN_REQ_MAX_ID. */
static void parse_id(vctx_t *v, json_object *obj, const char *key, int required, char **dst)
{
    const char *s = NULL;
    int got = get_string(v, obj, key, key, &s);
    if (got == F_ABSENT && required)
        verr(v, key, "is required");
    if (s == NULL)
        return;
    if (!cmn_valid_id(s, CMN_REQ_MAX_ID))
        verr(v, key, "must be 1-128 printable ASCII characters without spaces");
    else
        dup_into(v, dst, s);
}

int cmn_request_from_json(json_object *obj, const char *prefix, cmn_request_t *out, json_object *errors)
{
    if (out == NULL)
        return CMN_ERR_INVALID;
    vctx_t v = {errors, prefix != NULL ? prefix : "", 0, 0};
    const char *s = NULL;
    json_object *val = NULL;

    out->v = 1;
    out->urgency = CMN_URGENCY_NORMAL;
    if (obj == NULL || !json_object_is_type(obj, json_type_object)) {
        verr(&v, "", "must be a JSON object");
        goto out;
    }

    val = lookup(obj, "v");
    if (val != NULL) {
        if (!json_object_is_type(val, json_type_int))
            verr(&v, "v", "must be the integer 1");
        else if (json_object_get_int64(val) != 1)
            verr(&v, "v", "unsupported version: this service understands v 1");
    }

    parse_id(&v, obj, "request_id", 1, &out->request_id);
    /* The communication id hashes tenant ":" request_id, so a ':' in the
     * tenant would let ("a:b", "c") and ("a", "b:c") share one id. */
    if (get_string(&v, obj, "tenant_id", "tenant_id", &s) == F_PRESENT) {
        if (!cmn_valid_id(s, CMN_REQ_MAX_ID) || strchr(s, ':') != NULL)
            verr(&v, "tenant_id", "must be 1-128 printable ASCII characters without spaces or ':'");
        else
            dup_into(&v, &out->tenant_id, s);
    } else if (lookup(obj, "tenant_id") == NULL) {
        dup_into(&v, &out->tenant_id, "default");
    }
    parse_id(&v, obj, "client_id", 1, &out->client_id);
    parse_id(&v, obj, "plan_id", 0, &out->plan_id);

    if (get_string(&v, obj, "message_type", "message_type", &s) == F_ABSENT)
        verr(&v, "message_type", "is required");
    if (s != NULL) {
        if (!cmn_valid_message_type(s))
            verr(&v, "message_type", "must be 1-64 characters of a-z, 0-9, '_', '.', '-' not starting with '.'");
        else
            dup_into(&v, &out->message_type, s);
    }

    if (get_string(&v, obj, "urgency", "urgency", &s) == F_PRESENT &&
        cmn_urgency_parse(s, &out->urgency) != 0) {
        out->urgency = CMN_URGENCY_NORMAL;
        verr(&v, "urgency", "must be one of low, normal, high, critical");
    }

    val = lookup(obj, "recipient");
    if (val == NULL)
        verr(&v, "recipient", "is required");
    else
        parse_recipient(&v, val, "recipient.", &out->recipient);

    val = lookup(obj, "channels");
    if (val != NULL)
        parse_channel_list(&v, val, "channels", 0, out->channels, &out->n_channels);

    if (get_string(&v, obj, "template", "template", &s) == F_PRESENT) {
        if (!cmn_valid_template_name(s))
            verr(&v, "template", "must be 1-128 characters of A-Z, a-z, 0-9, '_', '.', '-' not starting with '.'");
        else
            dup_into(&v, &out->template_name, s);
    }

    val = lookup(obj, "context");
    if (val != NULL) {
        size_t len = 0;
        if (!json_object_is_type(val, json_type_object)) {
            verr(&v, "context", "must be an object");
        } else if (json_object_to_json_string_length(val, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                                     &len) == NULL) {
            v.rc = CMN_ERR_NOMEM;
        } else if (len > CMN_REQ_MAX_CONTEXT_BYTES) {
            verr(&v, "context", "must serialise to at most 65536 bytes");
        } else {
            out->context = json_object_get(val);
        }
    }

    val = lookup(obj, "attachments");
    if (val != NULL) {
        int before = v.nerr;
        parse_attachments(&v, val);
        if (v.nerr == before)
            out->attachments = json_object_get(val);
    }

    parse_time(&v, obj, "send_after", &out->send_after_ms);
    parse_time(&v, obj, "expires_at", &out->expires_at_ms);
    if (out->send_after_ms != 0 && out->expires_at_ms != 0 && out->expires_at_ms <= out->send_after_ms)
        verr(&v, "expires_at", "must be after send_after");
    parse_time(&v, obj, "received_at", &out->received_at_ms);

    /* The id is derived, never chosen: a supplied one (ingest adds it before
     * producing) is only accepted when it is the one we derive, so a record
     * cannot claim another communication's id. */
    if (out->tenant_id != NULL && out->request_id != NULL) {
        int idrc = cmn_uuid_communication_id(out->tenant_id, out->request_id, out->communication_id);
        if (idrc != 0) {
            out->communication_id[0] = '\0';
            v.rc = idrc;
        }
    }
    if (get_string(&v, obj, "communication_id", "communication_id", &s) == F_PRESENT) {
        if (!cmn_uuid_is_valid(s))
            verr(&v, "communication_id", "must be a UUID");
        else if (out->communication_id[0] != '\0' && strcmp(s, out->communication_id) != 0)
            verr(&v, "communication_id", "does not match the id derived from tenant_id and request_id");
    }

    check_unknown(&v, obj, REQUEST_FIELDS, "");

out:
    if (v.rc != 0)
        return v.rc;
    return v.nerr > 0 ? CMN_ERR_INVALID : 0;
}

int cmn_request_to_json(const cmn_request_t *r, cmn_buf_t *out)
{
    if (r == NULL || out == NULL)
        return CMN_ERR_INVALID;
    json_object *o = json_object_new_object();
    if (o == NULL)
        return CMN_ERR_NOMEM;
    int rc = env_put_int(o, "v", r->v > 0 ? r->v : 1, 0);
    rc = env_put_str(o, "request_id", r->request_id, rc);
    rc = env_put_str(o, "tenant_id", r->tenant_id != NULL ? r->tenant_id : "default", rc);
    rc = env_put_str(o, "client_id", r->client_id, rc);
    rc = env_put_str(o, "plan_id", r->plan_id, rc);
    rc = env_put_str(o, "message_type", r->message_type, rc);
    rc = env_put_str(o, "urgency", cmn_urgency_name(r->urgency), rc);
    rc = env_put_obj(o, "recipient", cmn_recipient_to_json_object(&r->recipient), rc);
    if (r->n_channels > 0)
        rc = env_put_obj(o, "channels", channel_array(r->channels, r->n_channels), rc);
    rc = env_put_str(o, "template", r->template_name, rc);
    rc = env_put_ref(o, "context", r->context, rc);
    rc = env_put_ref(o, "attachments", r->attachments, rc);
    rc = env_put_time(o, "send_after", r->send_after_ms, rc);
    rc = env_put_time(o, "expires_at", r->expires_at_ms, rc);
    if (r->communication_id[0] != '\0')
        rc = env_put_str(o, "communication_id", r->communication_id, rc);
    rc = env_put_time(o, "received_at", r->received_at_ms, rc);
    if (rc == 0)
        rc = env_append(o, out);
    json_object_put(o);
    return rc;
}

void cmn_request_clear(cmn_request_t *r)
{
    if (r == NULL)
        return;
    free(r->request_id);
    free(r->tenant_id);
    free(r->client_id);
    free(r->plan_id);
    free(r->message_type);
    free(r->template_name);
    cmn_recipient_clear(&r->recipient);
    json_object_put(r->context);
    json_object_put(r->attachments);
    memset(r, 0, sizeof *r);
}
