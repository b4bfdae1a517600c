/* wa_templates.c - loading config/whatsapp_templates.json and filling
 * template parameters. See wa_templates.h. */
#include "wa_templates.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/request.h"
#include "wa_content.h"

#define WA_TPL_FILE_MAX (1024 * 1024)
#define WA_TPL_PATH_MAX 128
#define WA_TPL_NAME_MAX 512
#define WA_TPL_VAR_KEY_MAX 32

/* Where a parameter comes from: a data path, and the literal used when the
 * data has no usable value (NULL: the parameter is required). */
typedef struct param_spec {
    char *path;
    char *def;
} param_spec_t;

/* locale -> Meta language code, or locale -> Twilio Content SID. */
typedef struct locale_map {
    char locale[WA_TPL_LOCALE_MAX + 1];
    char *value;
} locale_map_t;

typedef struct meta_spec {
    char *name;
    locale_map_t *langs;
    size_t n_langs;
    wa_tpl_header_kind_t header_kind;
    param_spec_t header;
    param_spec_t body[WA_TPL_PARAMS_MAX];
    size_t n_body;
    struct {
        wa_tpl_button_kind_t kind;
        int index;
        char *payload;     /* quick_reply */
        param_spec_t param;/* url */
    } buttons[WA_TPL_BUTTONS_MAX];
    size_t n_buttons;
} meta_spec_t;

typedef struct twilio_spec {
    locale_map_t *sids;
    size_t n_sids;
    struct {
        char *key;
        param_spec_t param;
    } vars[WA_TPL_PARAMS_MAX];
    size_t n_vars;
} twilio_spec_t;

typedef struct tpl_entry {
    char *name;           /* message type or template name */
    meta_spec_t *meta;    /* NULL: no Meta template */
    twilio_spec_t *twilio;/* NULL: no Twilio template */
} tpl_entry_t;

struct wa_templates {
    char fallback[WA_TPL_LOCALE_MAX + 1];
    tpl_entry_t *entries;
    size_t n;
};

/* ------------------------------------------------------------- helpers */

json_object *wa_data_path(json_object *data, const char *path)
{
    char seg[WA_TPL_PATH_MAX + 1];
    json_object *cur = data;
    const char *p = path;
    if (path == NULL)
        return NULL;
    while (cur != NULL) {
        size_t len = strcspn(p, ".");
        if (len == 0 || len > WA_TPL_PATH_MAX || !json_object_is_type(cur, json_type_object))
            return NULL;
        memcpy(seg, p, len);
        seg[len] = '\0';
        json_object *next = NULL;
        if (!json_object_object_get_ex(cur, seg, &next))
            return NULL;
        cur = next;
        if (p[len] == '\0')
            return cur;
        p += len + 1;
    }
    return NULL;
}

size_t wa_locale_chain(const char *locale, const char *fallback, char chain[][WA_TPL_LOCALE_MAX + 1], size_t max)
{
    size_t n = 0;
    char norm[WA_TPL_LOCALE_MAX + 1];
    if (max == 0)
        return 0;
    if (locale != NULL && cmn_locale_normalize(locale, norm, sizeof norm) == 0) {
        /* "zh-Hant-TW", "zh-Hant", "zh": drop one subtag at a time. */
        size_t len = strlen(norm);
        while (len > 0 && n < max) {
            memcpy(chain[n], norm, len);
            chain[n][len] = '\0';
            n++;
            while (len > 0 && norm[len - 1] != '-')
                len--;
            if (len > 0)
                len--; /* the '-' */
        }
    }
    if (n < max && fallback != NULL && fallback[0] != '\0') {
        for (size_t i = 0; i < n; i++) {
            if (strcmp(chain[i], fallback) == 0)
                return n;
        }
        snprintf(chain[n], WA_TPL_LOCALE_MAX + 1, "%s", fallback);
        n++;
    }
    return n;
}

static const char *map_lookup(const locale_map_t *m, size_t n, const char *locale, const char *fallback,
                              const char **matched)
{
    char chain[6][WA_TPL_LOCALE_MAX + 1];
    size_t nc = wa_locale_chain(locale, fallback, chain, 6);
    for (size_t c = 0; c < nc; c++) {
        for (size_t i = 0; i < n; i++) {
            if (strcmp(m[i].locale, chain[c]) == 0) {
                if (matched != NULL)
                    *matched = m[i].locale;
                return m[i].value;
            }
        }
    }
    return NULL;
}

static const tpl_entry_t *find(const wa_templates_t *t, const char *name)
{
    for (size_t i = 0; t != NULL && name != NULL && i < t->n; i++) {
        if (strcmp(t->entries[i].name, name) == 0)
            return &t->entries[i];
    }
    return NULL;
}

/* Meta and Twilio refuse parameters with line breaks, tabs or runs of more
 * than four spaces; sending one would only produce a provider error. */
static int param_text_ok(const char *s)
{
    int spaces = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t')
            return 0;
        spaces = *p == ' ' ? spaces + 1 : 0;
        if (spaces > 4)
            return 0;
    }
    return 1;
}

/* The value of parameter p (what names it in messages, e.g. "body[1]"):
 * *out is malloc'd. */
static int param_value(const param_spec_t *p, json_object *data, const char *what, char **out, char *errstr,
                       size_t errlen)
{
    json_object *v = wa_data_path(data, p->path);
    const char *s = NULL;
    *out = NULL;
    if (v != NULL && (json_object_is_type(v, json_type_string) || json_object_is_type(v, json_type_int) ||
                      json_object_is_type(v, json_type_double)))
        s = json_object_get_string(v);
    if (s == NULL || s[0] == '\0')
        s = p->def;
    if (s == NULL || s[0] == '\0') {
        snprintf(errstr, errlen, "template parameter %s (%s) is missing, empty, or not a string or number", what,
                 p->path);
        return CMN_ERR_INVALID;
    }
    if (!param_text_ok(s)) {
        snprintf(errstr, errlen, "template parameter %s (%s) holds a line break, a tab or more than 4 spaces in a row",
                 what, p->path);
        return CMN_ERR_INVALID;
    }
    *out = strdup(s);
    return *out != NULL ? 0 : CMN_ERR_NOMEM;
}

/* -------------------------------------------------------------- freeing */

static void param_free(param_spec_t *p)
{
    free(p->path);
    free(p->def);
}

static void map_free(locale_map_t *m, size_t n)
{
    for (size_t i = 0; m != NULL && i < n; i++)
        free(m[i].value);
    free(m);
}

static void meta_free(meta_spec_t *m)
{
    if (m == NULL)
        return;
    free(m->name);
    map_free(m->langs, m->n_langs);
    param_free(&m->header);
    for (size_t i = 0; i < m->n_body; i++)
        param_free(&m->body[i]);
    for (size_t i = 0; i < m->n_buttons; i++) {
        free(m->buttons[i].payload);
        param_free(&m->buttons[i].param);
    }
    free(m);
}

static void twilio_free(twilio_spec_t *tw)
{
    if (tw == NULL)
        return;
    map_free(tw->sids, tw->n_sids);
    for (size_t i = 0; i < tw->n_vars; i++) {
        free(tw->vars[i].key);
        param_free(&tw->vars[i].param);
    }
    free(tw);
}

void wa_templates_destroy(wa_templates_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->entries[i].name);
        meta_free(t->entries[i].meta);
        twilio_free(t->entries[i].twilio);
    }
    free(t->entries);
    free(t);
}

/* -------------------------------------------------------------- loading */

/* Names a member of the file in an error message ("message_types.x.meta.body[2]").
 * Names built from the file's own keys can in theory outgrow the buffer;
 * they are then cut, marked with "...", which only shortens a message. */
#define FIELD_MAX 256

static void field_fmt(char *out, size_t outlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void field_fmt(char *out, size_t outlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, outlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n >= outlen && outlen > 4)
        memcpy(out + outlen - 4, "...", 4);
}

/* The loader's state: where the first problem is reported. */
typedef struct loader {
    char *errstr;
    size_t errlen;
} loader_t;

static int bad(loader_t *l, const char *field, const char *reason)
{
    snprintf(l->errstr, l->errlen, "%s: %s", field, reason);
    return CMN_ERR_INVALID;
}

static int valid_path(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > WA_TPL_PATH_MAX || s[0] == '.' || s[n - 1] == '.' || strstr(s, "..") != NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_' && c != '-' && c != '.')
            return 0;
    }
    return 1;
}

/* Meta template names: lowercase letters, digits and underscores. */
static int valid_meta_name(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > WA_TPL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(c >= 'a' && c <= 'z') && !isdigit(c) && c != '_')
            return 0;
    }
    return 1;
}

/* Meta language codes: "en", "en_US", "pt_BR", "zh_HK", "fil". */
static int valid_language_code(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    size_t i = 0;
    while (i < n && s[i] >= 'a' && s[i] <= 'z')
        i++;
    if (i < 2 || i > 3)
        return 0;
    if (i == n)
        return 1;
    if (s[i] != '_' || n - i - 1 != 2)
        return 0;
    return isupper((unsigned char)s[i + 1]) && isupper((unsigned char)s[i + 2]);
}

static int valid_content_sid(const char *s)
{
    if (s == NULL || strlen(s) != 34 || s[0] != 'H' || s[1] != 'X')
        return 0;
    for (size_t i = 2; i < 34; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

/* Reads a parameter spec: "path" or {"param": "path", "default": "literal"}. */
static int load_param(loader_t *l, json_object *v, const char *field, param_spec_t *out)
{
    char f[FIELD_MAX];
    const char *path = NULL, *def = NULL;
    if (json_object_is_type(v, json_type_string)) {
        path = json_object_get_string(v);
    } else if (json_object_is_type(v, json_type_object)) {
        path = cmn_json_get_string(v, "param");
        def = cmn_json_get_string(v, "default");
        if (cmn_json_has(v, "default") && (def == NULL || def[0] == '\0' || !param_text_ok(def))) {
            field_fmt(f, sizeof f, "%s.default", field);
            return bad(l, f, "must be a non-empty string without line breaks, tabs or 5 spaces in a row");
        }
    } else {
        return bad(l, field, "must be a data path string or {\"param\": path, \"default\": text}");
    }
    if (!valid_path(path))
        return bad(l, field, "the data path must look like appointment.date (letters, digits, _ - .)");
    out->path = strdup(path);
    out->def = def != NULL ? strdup(def) : NULL;
    if (out->path == NULL || (def != NULL && out->def == NULL))
        return CMN_ERR_NOMEM;
    return 0;
}

/* Reads {"locale": value, ...}; check(value) validates each value. */
static int load_locale_map(loader_t *l, json_object *obj, const char *field, int (*check)(const char *),
                           const char *what, locale_map_t **out, size_t *nout)
{
    char f[FIELD_MAX];
    size_t n = obj != NULL ? (size_t)json_object_object_length(obj) : 0;
    if (obj == NULL || n == 0)
        return bad(l, field, "must be a non-empty object of locale -> value");
    locale_map_t *m = calloc(n, sizeof *m);
    if (m == NULL)
        return CMN_ERR_NOMEM;
    *out = m;
    *nout = 0;
    json_object_object_foreach(obj, key, val)
    {
        locale_map_t *e = &m[*nout];
        field_fmt(f, sizeof f, "%s.%s", field, key);
        if (cmn_locale_normalize(key, e->locale, sizeof e->locale) != 0)
            return bad(l, f, "the key must be a locale like en or pt-BR");
        const char *s = json_object_is_type(val, json_type_string) ? json_object_get_string(val) : NULL;
        if (!check(s))
            return bad(l, f, what);
        e->value = strdup(s);
        if (e->value == NULL)
            return CMN_ERR_NOMEM;
        (*nout)++;
    }
    return 0;
}

static int load_meta(loader_t *l, json_object *obj, const char *field, meta_spec_t *m)
{
    char f[FIELD_MAX];
    int rc;
    json_object_object_foreach(obj, key, val)
    {
        (void)val;
        if (key[0] != '_' && strcmp(key, "name") != 0 && strcmp(key, "languages") != 0 &&
            strcmp(key, "header") != 0 && strcmp(key, "body") != 0 && strcmp(key, "buttons") != 0) {
            field_fmt(f, sizeof f, "%s.%s", field, key);
            return bad(l, f, "unknown member (expected name, languages, header, body, buttons)");
        }
    }
    const char *name = cmn_json_get_string(obj, "name");
    field_fmt(f, sizeof f, "%s.name", field);
    if (!valid_meta_name(name))
        return bad(l, f, "must be the approved template's name: lowercase letters, digits and _");
    m->name = strdup(name);
    if (m->name == NULL)
        return CMN_ERR_NOMEM;
    field_fmt(f, sizeof f, "%s.languages", field);
    rc = load_locale_map(l, cmn_json_get_object(obj, "languages"), f, valid_language_code,
                         "must be a Meta language code like en_US or fr", &m->langs, &m->n_langs);
    if (rc != 0)
        return rc;

    if (cmn_json_has(obj, "header")) {
        json_object *h = cmn_json_get_object(obj, "header");
        const char *type = cmn_json_get_string(h, "type");
        field_fmt(f, sizeof f, "%s.header", field);
        if (h == NULL || type == NULL || (strcmp(type, "text") != 0 && strcmp(type, "image") != 0))
            return bad(l, f, "must be {\"type\": \"text\" or \"image\", \"param\": path}");
        m->header_kind = type[0] == 't' ? WA_TPL_HEADER_TEXT : WA_TPL_HEADER_IMAGE;
        rc = load_param(l, h, f, &m->header);
        if (rc != 0)
            return rc;
    }

    json_object *body = cmn_json_get_array(obj, "body");
    size_t nb = body != NULL ? json_object_array_length(body) : 0;
    field_fmt(f, sizeof f, "%s.body", field);
    if (cmn_json_has(obj, "body") && (body == NULL || nb > WA_TPL_PARAMS_MAX))
        return bad(l, f, "must be an array of at most 20 parameters");
    for (size_t i = 0; i < nb; i++) {
        field_fmt(f, sizeof f, "%s.body[%zu]", field, i);
        rc = load_param(l, json_object_array_get_idx(body, i), f, &m->body[i]);
        m->n_body = i + 1;
        if (rc != 0)
            return rc;
    }

    json_object *buttons = cmn_json_get_array(obj, "buttons");
    size_t nbt = buttons != NULL ? json_object_array_length(buttons) : 0;
    field_fmt(f, sizeof f, "%s.buttons", field);
    if (cmn_json_has(obj, "buttons") && (buttons == NULL || nbt > WA_TPL_BUTTONS_MAX))
        return bad(l, f, "must be an array of at most 10 buttons");
    for (size_t i = 0; i < nbt; i++) {
        json_object *b = json_object_array_get_idx(buttons, i);
        const char *sub = cmn_json_get_string(b, "sub_type");
        int64_t index = -1;
        field_fmt(f, sizeof f, "%s.buttons[%zu]", field, i);
        if (sub == NULL || (strcmp(sub, "quick_reply") != 0 && strcmp(sub, "url") != 0))
            return bad(l, f, "sub_type must be quick_reply or url");
        if (cmn_json_get_int64(b, "index", &index) != 0 || index < 0 || index >= WA_TPL_BUTTONS_MAX)
            return bad(l, f, "index must be the button's position in the template, 0 to 9");
        for (size_t k = 0; k < i; k++) {
            if (m->buttons[k].index == (int)index)
                return bad(l, f, "index is used by another button");
        }
        m->buttons[i].index = (int)index;
        m->n_buttons = i + 1;
        if (sub[0] == 'q') {
            const char *payload = cmn_json_get_string(b, "payload");
            m->buttons[i].kind = WA_TPL_BUTTON_QUICK_REPLY;
            if (payload == NULL || payload[0] == '\0' || strlen(payload) > 128)
                return bad(l, f, "a quick_reply button needs a payload of 1 to 128 bytes");
            m->buttons[i].payload = strdup(payload);
            if (m->buttons[i].payload == NULL)
                return CMN_ERR_NOMEM;
        } else {
            m->buttons[i].kind = WA_TPL_BUTTON_URL;
            rc = load_param(l, b, f, &m->buttons[i].param);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static int load_twilio(loader_t *l, json_object *obj, const char *field, twilio_spec_t *tw)
{
    char f[FIELD_MAX];
    int rc;
    json_object_object_foreach(obj, key, val)
    {
        (void)val;
        if (key[0] != '_' && strcmp(key, "content_sids") != 0 && strcmp(key, "variables") != 0) {
            field_fmt(f, sizeof f, "%s.%s", field, key);
            return bad(l, f, "unknown member (expected content_sids, variables)");
        }
    }
    field_fmt(f, sizeof f, "%s.content_sids", field);
    rc = load_locale_map(l, cmn_json_get_object(obj, "content_sids"), f, valid_content_sid,
                         "must be a Content SID: HX and 32 hex digits", &tw->sids, &tw->n_sids);
    if (rc != 0)
        return rc;
    json_object *vars = cmn_json_get_object(obj, "variables");
    field_fmt(f, sizeof f, "%s.variables", field);
    if (cmn_json_has(obj, "variables") &&
        (vars == NULL || (size_t)json_object_object_length(vars) > WA_TPL_PARAMS_MAX))
        return bad(l, f, "must be an object of at most 20 variable -> parameter");
    if (vars == NULL)
        return 0;
    json_object_object_foreach(vars, vkey, vval)
    {
        field_fmt(f, sizeof f, "%s.variables.%s", field, vkey);
        if (vkey[0] == '\0' || strlen(vkey) > WA_TPL_VAR_KEY_MAX)
            return bad(l, f, "the variable name must be 1 to 32 characters");
        tw->vars[tw->n_vars].key = strdup(vkey);
        if (tw->vars[tw->n_vars].key == NULL)
            return CMN_ERR_NOMEM;
        rc = load_param(l, vval, f, &tw->vars[tw->n_vars].param);
        tw->n_vars++;
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int load_entry(loader_t *l, const char *name, json_object *obj, tpl_entry_t *e)
{
    char f[FIELD_MAX];
    int rc = 0;
    field_fmt(f, sizeof f, "message_types.%s", name);
    if (!cmn_valid_template_name(name))
        return bad(l, f, "the key must be a message type or template name ([A-Za-z0-9_.-], not starting with .)");
    if (!json_object_is_type(obj, json_type_object))
        return bad(l, f, "must be an object with meta and/or twilio");
    e->name = strdup(name);
    if (e->name == NULL)
        return CMN_ERR_NOMEM;
    json_object_object_foreach(obj, key, val)
    {
        char fk[FIELD_MAX];
        field_fmt(fk, sizeof fk, "%s.%s", f, key);
        if (key[0] == '_')
            continue;
        if (!json_object_is_type(val, json_type_object))
            return bad(l, fk, "must be an object");
        if (strcmp(key, "meta") == 0) {
            e->meta = calloc(1, sizeof *e->meta);
            rc = e->meta != NULL ? load_meta(l, val, fk, e->meta) : CMN_ERR_NOMEM;
        } else if (strcmp(key, "twilio") == 0) {
            e->twilio = calloc(1, sizeof *e->twilio);
            rc = e->twilio != NULL ? load_twilio(l, val, fk, e->twilio) : CMN_ERR_NOMEM;
        } else {
            return bad(l, fk, "unknown member (expected meta, twilio)");
        }
        if (rc != 0)
            return rc;
    }
    if (e->meta == NULL && e->twilio == NULL)
        return bad(l, f, "needs a meta or a twilio template");
    return 0;
}

wa_templates_t *wa_templates_from_json(json_object *root, char *errstr, size_t errlen)
{
    loader_t l = {errstr, errlen};
    int rc = 0;
    wa_templates_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    if (!json_object_is_type(root, json_type_object)) {
        rc = bad(&l, "document", "must be a JSON object");
        goto cleanup;
    }
    const char *fallback = "en";
    if (cmn_json_has(root, "fallback_locale"))
        fallback = cmn_json_get_string(root, "fallback_locale");
    if (cmn_locale_normalize(fallback, t->fallback, sizeof t->fallback) != 0) {
        rc = bad(&l, "fallback_locale", "must be a locale like en");
        goto cleanup;
    }
    json_object *types = cmn_json_get_object(root, "message_types");
    if (types == NULL) {
        rc = bad(&l, "message_types", "must be an object of message type -> templates");
        goto cleanup;
    }
    size_t n = (size_t)json_object_object_length(types);
    t->entries = calloc(n > 0 ? n : 1, sizeof *t->entries);
    if (t->entries == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    json_object_object_foreach(types, name, obj)
    {
        if (name[0] == '_')
            continue;
        rc = load_entry(&l, name, obj, &t->entries[t->n]);
        t->n++;
        if (rc != 0)
            goto cleanup;
    }
cleanup:
    if (rc == CMN_ERR_NOMEM)
        snprintf(errstr, errlen, "out of memory");
    if (rc != 0) {
        wa_templates_destroy(t);
        return NULL;
    }
    return t;
}

wa_templates_t *wa_templates_load(const char *path, char *errstr, size_t errlen)
{
    char why[256] = "";
    cmn_buf_t text = CMN_BUF_INIT;
    json_object *root = NULL;
    wa_templates_t *t = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(errstr, errlen, "%s: cannot be opened", path);
        goto cleanup;
    }
    char chunk[8192];
    size_t got;
    do {
        got = fread(chunk, 1, sizeof chunk, f);
        if (got > 0 && cmn_buf_append(&text, chunk, got) != 0) {
            snprintf(errstr, errlen, "out of memory");
            goto cleanup;
        }
    } while (got == sizeof chunk && text.len <= WA_TPL_FILE_MAX);
    if (ferror(f) || text.len > WA_TPL_FILE_MAX) {
        snprintf(errstr, errlen, "%s: %s", path, ferror(f) ? "cannot be read" : "larger than 1 MiB");
        goto cleanup;
    }
    root = cmn_json_parse(text.data != NULL ? text.data : "", text.len, why, sizeof why);
    if (root == NULL) {
        snprintf(errstr, errlen, "%s: not valid JSON: %s", path, why);
        goto cleanup;
    }
    t = wa_templates_from_json(root, why, sizeof why);
    if (t == NULL)
        snprintf(errstr, errlen, "%s: %s", path, why);
cleanup:
    if (f != NULL)
        fclose(f);
    json_object_put(root);
    cmn_buf_free(&text);
    return t;
}

/* ------------------------------------------------------------- lookups */

int wa_templates_has(const wa_templates_t *t, const char *name, wa_tpl_provider_t provider)
{
    const tpl_entry_t *e = find(t, name);
    if (e == NULL)
        return 0;
    return provider == WA_TPL_META ? e->meta != NULL : e->twilio != NULL;
}

void wa_tpl_call_clear(wa_tpl_call_t *c)
{
    if (c == NULL)
        return;
    free(c->header_value);
    for (size_t i = 0; i < c->n_body; i++)
        free(c->body[i]);
    for (size_t i = 0; i < c->n_buttons; i++)
        free(c->buttons[i].value);
    memset(c, 0, sizeof *c);
}

int wa_templates_meta_call(const wa_templates_t *t, const char *name, const char *locale, json_object *data,
                           wa_tpl_call_t *out, char *errstr, size_t errlen)
{
    char what[32];
    int rc = 0;
    memset(out, 0, sizeof *out);
    const tpl_entry_t *e = find(t, name);
    if (e == NULL || e->meta == NULL) {
        snprintf(errstr, errlen, "no approved Meta template for %s", name != NULL ? name : "(none)");
        return CMN_ERR_NOTFOUND;
    }
    const meta_spec_t *m = e->meta;
    out->name = m->name;
    out->language = map_lookup(m->langs, m->n_langs, locale, t->fallback, NULL);
    if (out->language == NULL) {
        snprintf(errstr, errlen, "the Meta template %s has no language for the locale or %s", m->name, t->fallback);
        return CMN_ERR_NOTFOUND;
    }
    out->header_kind = m->header_kind;
    if (m->header_kind != WA_TPL_HEADER_NONE) {
        rc = param_value(&m->header, data, "header", &out->header_value, errstr, errlen);
        if (rc != 0)
            return rc;
        if (m->header_kind == WA_TPL_HEADER_TEXT && wa_utf8_chars(out->header_value) > WA_TPL_HEADER_TEXT_MAX) {
            snprintf(errstr, errlen, "template parameter header (%s) is longer than 60 characters", m->header.path);
            return CMN_ERR_INVALID;
        }
        if (m->header_kind == WA_TPL_HEADER_IMAGE && !wa_valid_http_url(out->header_value)) {
            snprintf(errstr, errlen, "template parameter header (%s) is not an http(s) URL", m->header.path);
            return CMN_ERR_INVALID;
        }
    }
    for (size_t i = 0; i < m->n_body; i++) {
        snprintf(what, sizeof what, "body[%zu]", i);
        rc = param_value(&m->body[i], data, what, &out->body[i], errstr, errlen);
        if (rc != 0)
            return rc;
        out->n_body = i + 1;
    }
    for (size_t i = 0; i < m->n_buttons; i++) {
        out->buttons[i].kind = m->buttons[i].kind;
        out->buttons[i].index = m->buttons[i].index;
        out->n_buttons = i + 1;
        if (m->buttons[i].kind == WA_TPL_BUTTON_QUICK_REPLY) {
            out->buttons[i].value = strdup(m->buttons[i].payload);
            if (out->buttons[i].value == NULL)
                return CMN_ERR_NOMEM;
            continue;
        }
        snprintf(what, sizeof what, "buttons[%zu]", i);
        rc = param_value(&m->buttons[i].param, data, what, &out->buttons[i].value, errstr, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void wa_tpl_twilio_call_clear(wa_tpl_twilio_call_t *c)
{
    if (c == NULL)
        return;
    free(c->variables_json);
    memset(c, 0, sizeof *c);
}

int wa_templates_twilio_call(const wa_templates_t *t, const char *name, const char *locale, json_object *data,
                             wa_tpl_twilio_call_t *out, char *errstr, size_t errlen)
{
    char what[64];
    int rc = 0;
    cmn_buf_t buf = CMN_BUF_INIT;
    json_object *vars = NULL;
    memset(out, 0, sizeof *out);
    const tpl_entry_t *e = find(t, name);
    if (e == NULL || e->twilio == NULL) {
        snprintf(errstr, errlen, "no approved Twilio Content template for %s", name != NULL ? name : "(none)");
        return CMN_ERR_NOTFOUND;
    }
    const twilio_spec_t *tw = e->twilio;
    out->content_sid = map_lookup(tw->sids, tw->n_sids, locale, t->fallback, NULL);
    if (out->content_sid == NULL) {
        snprintf(errstr, errlen, "the Twilio template of %s has no Content SID for the locale or %s", name,
                 t->fallback);
        return CMN_ERR_NOTFOUND;
    }
    vars = json_object_new_object();
    if (vars == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < tw->n_vars; i++) {
        char *value = NULL;
        snprintf(what, sizeof what, "variables.%s", tw->vars[i].key);
        rc = param_value(&tw->vars[i].param, data, what, &value, errstr, errlen);
        if (rc != 0)
            goto cleanup;
        json_object *jv = json_object_new_string(value);
        free(value);
        if (jv == NULL || json_object_object_add(vars, tw->vars[i].key, jv) != 0) {
            json_object_put(jv);
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
    }
    rc = cmn_json_to_buf(vars, &buf);
    if (rc != 0)
        goto cleanup;
    out->variables_json = cmn_buf_steal(&buf);
cleanup:
    if (rc == CMN_ERR_NOMEM)
        snprintf(errstr, errlen, "out of memory");
    json_object_put(vars);
    cmn_buf_free(&buf);
    return rc;
}
