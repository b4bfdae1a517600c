/* sbx_spec.c - CreateMessage schema extraction and value checks. See
 * sbx_spec.h. */
#include "sbx_spec.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crm/err.h"
#include "crm/json.h"
#include "crm/time.h"
#include "sbx_form.h"

#define MESSAGES_PATH "/2010-04-01/Accounts/{AccountSid}/Messages.json"
#define FORM_TYPE "application/x-www-form-urlencoded"
#define REF_PREFIX "#/components/schemas/"
/* The spec is under 2 MB; refuse anything absurd rather than reading it. */
#define SPEC_MAX_BYTES (64L * 1024 * 1024)
#define MAX_REF_DEPTH 8

static int read_all(const char *path, char **out, size_t *len, char *errstr, size_t errlen)
{
    int rc = 0;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    *out = NULL;
    if (f == NULL) {
        snprintf(errstr, errlen, "cannot open %s: %s", path, strerror(errno));
        return CMN_ERR_IO;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        rc = CMN_ERR_IO;
        goto cleanup;
    }
    long size = ftell(f);
    if (size < 0 || size > SPEC_MAX_BYTES || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(errstr, errlen, "%s: unreadable or larger than %ld bytes", path, SPEC_MAX_BYTES);
        rc = CMN_ERR_IO;
        goto cleanup;
    }
    buf = malloc((size_t)size + 1);
    if (buf == NULL) {
        snprintf(errstr, errlen, "out of memory");
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        snprintf(errstr, errlen, "%s: short read", path);
        rc = CMN_ERR_IO;
        goto cleanup;
    }
    buf[size] = '\0';
    *out = buf;
    *len = (size_t)size;
    buf = NULL;
cleanup:
    free(buf);
    fclose(f);
    return rc;
}

/* Follows "$ref": "#/components/schemas/<name>" links from schema. */
static json_object *resolve(json_object *root, json_object *schema)
{
    for (int depth = 0; schema != NULL && depth < MAX_REF_DEPTH; depth++) {
        const char *ref = cmn_json_get_string(schema, "$ref");
        if (ref == NULL)
            return schema;
        if (strncmp(ref, REF_PREFIX, strlen(REF_PREFIX)) != 0)
            return NULL;
        json_object *schemas = cmn_json_get_object(cmn_json_get_object(root, "components"), "schemas");
        schema = cmn_json_get_object(schemas, ref + strlen(REF_PREFIX));
    }
    return NULL;
}

static void rule_clear(sbx_rule_t *r)
{
    for (size_t i = 0; i < r->n_enums; i++)
        free(r->enums[i]);
    free(r->enums);
    if (r->has_pattern)
        regfree(&r->pattern);
    free(r->pattern_text);
    memset(r, 0, sizeof *r);
}

static int load_rule(json_object *root, json_object *raw, sbx_rule_t *r, char *errstr, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->min_length = -1;
    r->max_length = -1;
    json_object *s = resolve(root, raw);
    if (s == NULL) {
        snprintf(errstr, errlen, "unresolvable $ref");
        return CMN_ERR_PARSE;
    }
    const char *type = cmn_json_get_string(s, "type");
    if (type == NULL || strcmp(type, "string") == 0)
        r->type = SBX_T_STRING;
    else if (strcmp(type, "integer") == 0)
        r->type = SBX_T_INTEGER;
    else if (strcmp(type, "number") == 0)
        r->type = SBX_T_NUMBER;
    else if (strcmp(type, "boolean") == 0)
        r->type = SBX_T_BOOLEAN;
    else if (strcmp(type, "array") == 0)
        r->type = SBX_T_ARRAY;
    else {
        snprintf(errstr, errlen, "unsupported type %s", type);
        return CMN_ERR_PARSE;
    }
    const char *format = cmn_json_get_string(s, "format");
    json_object *xt = cmn_json_get_object(s, "x-twilio");
    json_object *ignore = NULL;
    int ignore_format = xt != NULL && json_object_object_get_ex(xt, "ignoreFormat", &ignore) &&
                        json_object_get_boolean(ignore);
    if (format == NULL || ignore_format)
        r->format = SBX_F_NONE;
    else if (strcmp(format, "phone-number") == 0)
        r->format = SBX_F_PHONE;
    else if (strcmp(format, "uri") == 0)
        r->format = SBX_F_URI;
    else if (strcmp(format, "date-time") == 0)
        r->format = SBX_F_DATETIME;
    else
        r->format = SBX_F_OTHER;
    json_object *en = cmn_json_get_array(s, "enum");
    if (en != NULL) {
        size_t n = json_object_array_length(en);
        r->enums = calloc(n > 0 ? n : 1, sizeof *r->enums);
        if (r->enums == NULL)
            return CMN_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) {
            const char *v = json_object_get_string(json_object_array_get_idx(en, i));
            r->enums[i] = strdup(v != NULL ? v : "");
            if (r->enums[i] == NULL)
                return CMN_ERR_NOMEM;
            r->n_enums++;
        }
    }
    int64_t len = 0;
    if (cmn_json_get_int64(s, "minLength", &len) == 0)
        r->min_length = (long)len;
    if (cmn_json_get_int64(s, "maxLength", &len) == 0)
        r->max_length = (long)len;
    const char *pattern = cmn_json_get_string(s, "pattern");
    /* OpenAPI patterns are ECMAScript regular expressions; Twilio's SID
     * patterns ("^MG[0-9a-fA-F]{32}$") are also POSIX extended ones. One
     * that is not is skipped rather than enforced wrongly. */
    if (pattern != NULL && regcomp(&r->pattern, pattern, REG_EXTENDED | REG_NOSUB) == 0) {
        r->has_pattern = 1;
        r->pattern_text = strdup(pattern);
        if (r->pattern_text == NULL)
            return CMN_ERR_NOMEM;
    }
    return 0;
}

void sbx_schema_destroy(sbx_schema_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->params[i].name);
        rule_clear(&s->params[i].rule);
        rule_clear(&s->params[i].item);
    }
    free(s->params);
    rule_clear(&s->account_sid);
    free(s->title);
    free(s);
}

sbx_schema_t *sbx_schema_load(const char *path, char *errstr, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    char why[256] = "";
    json_object *root = NULL;
    sbx_schema_t *s = NULL;
    int ok = 0;

    if (read_all(path, &text, &len, errstr, errlen) != 0)
        goto cleanup;
    root = cmn_json_parse(text, len, why, sizeof why);
    if (root == NULL) {
        snprintf(errstr, errlen, "%s is not JSON: %s", path, why);
        goto cleanup;
    }
    json_object *post = cmn_json_get_object(cmn_json_get_object(cmn_json_get_object(root, "paths"), MESSAGES_PATH),
                                            "post");
    json_object *content = cmn_json_get_object(cmn_json_get_object(post, "requestBody"), "content");
    json_object *schema = resolve(root, cmn_json_get_object(cmn_json_get_object(content, FORM_TYPE), "schema"));
    json_object *props = cmn_json_get_object(schema, "properties");
    if (props == NULL) {
        snprintf(errstr, errlen, "%s has no " FORM_TYPE " request schema for POST " MESSAGES_PATH, path);
        goto cleanup;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(errstr, errlen, "out of memory");
        goto cleanup;
    }
    s->title = strdup(cmn_json_get_string(schema, "title") != NULL ? cmn_json_get_string(schema, "title")
                                                                    : "CreateMessageRequest");
    s->params = calloc((size_t)json_object_object_length(props) + 1, sizeof *s->params);
    if (s->title == NULL || s->params == NULL) {
        snprintf(errstr, errlen, "out of memory");
        goto cleanup;
    }
    json_object_object_foreach(props, pname, prop)
    {
        sbx_param_t *p = &s->params[s->n];
        p->name = strdup(pname);
        if (p->name == NULL) {
            snprintf(errstr, errlen, "out of memory");
            goto cleanup;
        }
        s->n++;
        if (load_rule(root, prop, &p->rule, why, sizeof why) != 0) {
            snprintf(errstr, errlen, "property %s: %s", pname, why);
            goto cleanup;
        }
        if (p->rule.type == SBX_T_ARRAY) {
            json_object *items = cmn_json_get_object(resolve(root, prop), "items");
            if (load_rule(root, items, &p->item, why, sizeof why) != 0) {
                snprintf(errstr, errlen, "property %s items: %s", pname, why);
                goto cleanup;
            }
        }
    }
    json_object *required = cmn_json_get_array(schema, "required");
    for (size_t i = 0; required != NULL && i < json_object_array_length(required); i++) {
        const char *name = json_object_get_string(json_object_array_get_idx(required, i));
        for (size_t k = 0; name != NULL && k < s->n; k++) {
            if (strcmp(s->params[k].name, name) == 0)
                s->params[k].required = 1;
        }
    }
    /* The path's AccountSid: its pattern ("^AC[0-9a-fA-F]{32}$"). */
    json_object *params = cmn_json_get_array(post, "parameters");
    s->account_sid.min_length = s->account_sid.max_length = -1;
    for (size_t i = 0; params != NULL && i < json_object_array_length(params); i++) {
        json_object *p = resolve(root, json_object_array_get_idx(params, i));
        const char *name = cmn_json_get_string(p, "name");
        if (name != NULL && strcmp(name, "AccountSid") == 0) {
            if (load_rule(root, cmn_json_get_object(p, "schema"), &s->account_sid, why, sizeof why) != 0) {
                snprintf(errstr, errlen, "AccountSid: %s", why);
                goto cleanup;
            }
        }
    }
    ok = 1;
cleanup:
    if (root != NULL)
        json_object_put(root);
    free(text);
    if (!ok) {
        sbx_schema_destroy(s);
        s = NULL;
    }
    return s;
}

const sbx_param_t *sbx_schema_find(const sbx_schema_t *s, const char *name)
{
    for (size_t i = 0; s != NULL && name != NULL && i < s->n; i++) {
        if (strcmp(s->params[i].name, name) == 0)
            return &s->params[i];
    }
    return NULL;
}

static int valid_e164(const char *s)
{
    if (s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    size_t n = strlen(s + 1);
    if (n < 2 || n > 15)
        return 0;
    return strspn(s + 1, "0123456789") == n;
}

int sbx_valid_phone(const char *s)
{
    if (s == NULL)
        return 0;
    const char *colon = strchr(s, ':');
    if (colon != NULL) {
        /* A channel address: "whatsapp:+14155550100", "messenger:..."
         * are Twilio's; only the E.164 kind is accepted here. */
        for (const char *p = s; p < colon; p++) {
            if (!(*p >= 'a' && *p <= 'z'))
                return 0;
        }
        return colon > s && valid_e164(colon + 1);
    }
    return valid_e164(s);
}

int sbx_valid_uri(const char *s)
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
    const char *host = s + scheme;
    size_t hlen = strcspn(host, ":/?#");
    if (hlen == 0)
        return 0;
    for (size_t i = 0; i < hlen; i++) {
        char c = host[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
        if (!ok) /* underscores included: Twilio refuses them in host names */
            return 0;
    }
    if (host[hlen] == ':') {
        const char *port = host + hlen + 1;
        size_t plen = strspn(port, "0123456789");
        if (plen == 0 || plen > 5 || (port[plen] != '\0' && port[plen] != '/' && port[plen] != '?'))
            return 0;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p <= 0x20 || *p == 0x7f)
            return 0;
    }
    return 1;
}

static int valid_integer(const char *s)
{
    const char *p = s[0] == '-' ? s + 1 : s;
    size_t n = strlen(p);
    return n > 0 && n <= 18 && strspn(p, "0123456789") == n;
}

static int valid_number(const char *s)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(s, &end);
    return s[0] != '\0' && end != s && *end == '\0' && errno == 0 && isfinite(d);
}

int sbx_rule_check(const sbx_rule_t *r, const char *v, char *errstr, size_t errlen)
{
    switch (r->type) {
    case SBX_T_INTEGER:
        if (!valid_integer(v)) {
            snprintf(errstr, errlen, "must be an integer");
            return -1;
        }
        break;
    case SBX_T_NUMBER:
        if (!valid_number(v)) {
            snprintf(errstr, errlen, "must be a number");
            return -1;
        }
        break;
    case SBX_T_BOOLEAN:
        if (strcasecmp(v, "true") != 0 && strcasecmp(v, "false") != 0) {
            snprintf(errstr, errlen, "must be true or false");
            return -1;
        }
        break;
    case SBX_T_STRING:
    case SBX_T_ARRAY:
        break;
    }
    if (r->n_enums > 0) {
        int found = 0;
        for (size_t i = 0; i < r->n_enums && !found; i++)
            found = strcmp(r->enums[i], v) == 0;
        if (!found) {
            size_t off = (size_t)snprintf(errstr, errlen, "must be one of");
            for (size_t i = 0; i < r->n_enums && off < errlen; i++)
                off += (size_t)snprintf(errstr + off, errlen - off, "%s %s", i > 0 ? "," : "", r->enums[i]);
            return -1;
        }
    }
    size_t chars = sbx_utf8_length(v);
    if (r->min_length >= 0 && chars < (size_t)r->min_length) {
        snprintf(errstr, errlen, "must be at least %ld characters long", r->min_length);
        return -1;
    }
    if (r->max_length >= 0 && chars > (size_t)r->max_length) {
        snprintf(errstr, errlen, "must be at most %ld characters long", r->max_length);
        return -1;
    }
    if (r->has_pattern && regexec(&r->pattern, v, 0, NULL, 0) != 0) {
        snprintf(errstr, errlen, "must match %s", r->pattern_text);
        return -1;
    }
    int64_t ms = 0;
    switch (r->format) {
    case SBX_F_PHONE:
        if (!sbx_valid_phone(v)) {
            snprintf(errstr, errlen, "must be an E.164 phone number like +14155552345");
            return -1;
        }
        break;
    case SBX_F_URI:
        if (!sbx_valid_uri(v)) {
            snprintf(errstr, errlen, "must be an absolute http(s) URL with a valid host name");
            return -1;
        }
        break;
    case SBX_F_DATETIME:
        if (cmn_time_parse_rfc3339(v, &ms) != 0) {
            snprintf(errstr, errlen, "must be an ISO 8601 date-time");
            return -1;
        }
        break;
    case SBX_F_NONE:
    case SBX_F_OTHER:
        break;
    }
    return 0;
}
