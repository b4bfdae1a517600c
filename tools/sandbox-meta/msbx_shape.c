/* msbx_shape.c - structural validation against the official examples. See
 * msbx_shape.h. */
#include "msbx_shape.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"

#define PATH_MAX_LEN 256
#define OPAQUE_MAX 512

/* Optional members (see msbx_shape.h), by schema path ("[]" for any index). */
static const struct {
    const char *path;
    const char *key;
} OPTIONAL[] = {
    {"", "biz_opaque_callback_data"},
    {"text", "preview_url"},
    {"image", "caption"},
    {"document", "caption"},
    {"interactive", "header"},
    {"interactive", "footer"},
    {"interactive.action.sections[].rows[]", "description"},
    {"template", "components"},
};

static int is_optional(const char *path, const char *key)
{
    for (size_t i = 0; i < sizeof OPTIONAL / sizeof OPTIONAL[0]; i++) {
        if (strcmp(OPTIONAL[i].path, path) == 0 && strcmp(OPTIONAL[i].key, key) == 0)
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------------- examples */

void msbx_examples_free(msbx_examples_t *ex)
{
    if (ex == NULL)
        return;
    json_object_put(ex->root);
    memset(ex, 0, sizeof *ex);
}

int msbx_examples_from_json(json_object *root, msbx_examples_t *ex, char *errstr, size_t errlen)
{
    memset(ex, 0, sizeof *ex);
    ex->root = root;
    json_object *verbatim = cmn_json_get_object(root, "verbatim_from_spec");
    json_object *sends = cmn_json_get_object(verbatim, "send_request_examples");
    if (sends == NULL) {
        snprintf(errstr, errlen, "no verbatim_from_spec.send_request_examples object");
        goto fail;
    }
    ex->success = cmn_json_get_object(verbatim, "send_success_response");
    json_object_object_foreach(sends, name, item)
    {
        const char *type = cmn_json_get_string(item, "type");
        if (type == NULL) {
            snprintf(errstr, errlen, "example \"%s\" has no string \"type\"", name);
            goto fail;
        }
        if (ex->n == MSBX_EXAMPLES_MAX) {
            snprintf(errstr, errlen, "more than %d examples", MSBX_EXAMPLES_MAX);
            goto fail;
        }
        ex->items[ex->n] = item;
        ex->names[ex->n] = name;
        ex->n++;
        size_t t = 0;
        while (t < ex->ntypes && strcmp(ex->types[t], type) != 0)
            t++;
        if (t == ex->ntypes && ex->ntypes < MSBX_TYPES_MAX)
            ex->types[ex->ntypes++] = type;
    }
    if (ex->n == 0) {
        snprintf(errstr, errlen, "send_request_examples is empty");
        goto fail;
    }
    return 0;
fail:
    msbx_examples_free(ex);
    return -1;
}

int msbx_examples_load(const char *path, msbx_examples_t *ex, char *errstr, size_t errlen)
{
    char why[256] = "";
    cmn_buf_t text = CMN_BUF_INIT;
    int rc = -1;
    FILE *f = fopen(path, "rb");
    memset(ex, 0, sizeof *ex);
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
    } while (got == sizeof chunk);
    if (ferror(f)) {
        snprintf(errstr, errlen, "%s: cannot be read", path);
        goto cleanup;
    }
    json_object *root = cmn_json_parse(text.data != NULL ? text.data : "", text.len, why, sizeof why);
    if (root == NULL) {
        snprintf(errstr, errlen, "%s: not JSON: %s", path, why);
        goto cleanup;
    }
    rc = msbx_examples_from_json(root, ex, why, sizeof why);
    if (rc != 0)
        snprintf(errstr, errlen, "%s: %s", path, why);
cleanup:
    if (f != NULL)
        fclose(f);
    cmn_buf_free(&text);
    return rc;
}

/* ---------------------------------------------------------------- pools */

/* The example values found at one path (borrowed from the examples). */
typedef struct pool {
    json_object **v;
    size_t n, cap;
} pool_t;

static int pool_add(pool_t *p, json_object *o)
{
    if (p->n == p->cap) {
        size_t cap = p->cap > 0 ? 2 * p->cap : 8;
        json_object **v = realloc(p->v, cap * sizeof *v);
        if (v == NULL)
            return -1;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = o;
    return 0;
}

static void pool_free(pool_t *p)
{
    free(p->v);
    p->v = NULL;
    p->n = p->cap = 0;
}

/* JSON kinds as the examples distinguish them: integers and decimals are
 * both numbers. */
typedef enum kind { K_NULL, K_BOOL, K_NUMBER, K_STRING, K_OBJECT, K_ARRAY } kind_t;

static kind_t kind_of(json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_boolean:
        return K_BOOL;
    case json_type_int:
    case json_type_double:
        return K_NUMBER;
    case json_type_string:
        return K_STRING;
    case json_type_object:
        return K_OBJECT;
    case json_type_array:
        return K_ARRAY;
    case json_type_null:
        break;
    }
    return K_NULL;
}

static const char *kind_name(kind_t k)
{
    static const char *const names[] = {"null", "a boolean", "a number", "a string", "an object", "an array"};
    return names[k];
}

/* The state of one check: the first problem is kept. */
typedef struct checker {
    char *errstr;
    size_t errlen;
    int failed;
} checker_t;

static int fail(checker_t *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(checker_t *c, const char *path, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (!c->failed) {
        if (snprintf(c->errstr, c->errlen, "%s: %s", path[0] != '\0' ? path : "body", why) < 0)
            c->errstr[0] = '\0';
    }
    c->failed = 1;
    return -1;
}

static void join(char *out, const char *path, const char *key)
{
    if (snprintf(out, PATH_MAX_LEN, "%s%s%s", path, path[0] != '\0' ? "." : "", key) >= PATH_MAX_LEN)
        out[PATH_MAX_LEN - 1] = '\0';
}

static int check_node(checker_t *c, const pool_t *pool, const char *path, const char *spath, json_object *req);

/* Keys of n absent from req and not optional: the first in *missing. */
static size_t count_missing(json_object *n, json_object *req, const char *spath, const char **missing)
{
    size_t k = 0;
    *missing = NULL;
    json_object_object_foreach(n, key, val)
    {
        (void)val;
        if (!cmn_json_has(req, key) && !is_optional(spath, key)) {
            if (k++ == 0)
                *missing = key;
        }
    }
    return k;
}

/* Keys of req absent from n and not optional: the first in *unknown. */
static size_t count_unknown(json_object *n, json_object *req, const char *spath, const char **unknown)
{
    size_t k = 0;
    *unknown = NULL;
    json_object_object_foreach(req, key, val)
    {
        (void)val;
        if (!cmn_json_has(n, key) && !is_optional(spath, key)) {
            if (k++ == 0)
                *unknown = key;
        }
    }
    return k;
}

static int check_object(checker_t *c, const pool_t *pool, const char *path, const char *spath, json_object *req)
{
    pool_t cand = {0};
    int rc = 0;
    const char *rtype = cmn_json_get_string(req, "type");
    int typed_pool = 0;
    for (size_t i = 0; i < pool->n; i++)
        typed_pool |= kind_of(pool->v[i]) == K_OBJECT && cmn_json_get_string(pool->v[i], "type") != NULL;
    /* Candidates: example objects here, of the request's "type" when the
     * examples here are typed. */
    for (size_t i = 0; rc == 0 && i < pool->n; i++) {
        json_object *n = pool->v[i];
        if (kind_of(n) != K_OBJECT)
            continue;
        const char *ntype = cmn_json_get_string(n, "type");
        if (typed_pool && rtype != NULL && (ntype == NULL || strcmp(ntype, rtype) != 0))
            continue;
        if (pool_add(&cand, n) != 0)
            rc = fail(c, path, "out of memory");
    }
    if (rc != 0)
        goto cleanup;
    if (cand.n == 0) {
        char types[160] = "";
        for (size_t i = 0; i < pool->n; i++) {
            const char *t = cmn_json_get_string(pool->v[i], "type");
            if (t != NULL && strstr(types, t) == NULL && strlen(types) + strlen(t) + 3 < sizeof types) {
                strcat(types, types[0] != '\0' ? ", " : "");
                strcat(types, t);
            }
        }
        char tpath[PATH_MAX_LEN];
        join(tpath, path, "type");
        rc = rtype != NULL ? fail(c, tpath, "'%s' is not one of the examples' types here (%s)", rtype, types)
                           : fail(c, path, "no example has an object here");
        goto cleanup;
    }
    /* One example object must match key for key (optional keys aside). */
    const char *best_missing = NULL, *best_unknown = NULL;
    size_t best = (size_t)-1;
    int matched = 0;
    for (size_t i = 0; i < cand.n && !matched; i++) {
        const char *missing = NULL, *unknown = NULL;
        size_t diff = count_missing(cand.v[i], req, spath, &missing) + count_unknown(cand.v[i], req, spath, &unknown);
        if (diff == 0)
            matched = 1;
        else if (diff < best) {
            best = diff;
            best_missing = missing;
            best_unknown = unknown;
        }
    }
    if (!matched) {
        rc = best_unknown != NULL ? fail(c, path, "unknown key '%s' (no example has it here)", best_unknown)
                                  : fail(c, path, "missing key '%s' (the examples have it)", best_missing);
        goto cleanup;
    }
    /* Members: against everything the examples have at that path. */
    json_object_object_foreach(req, key, val)
    {
        char cpath[PATH_MAX_LEN], cspath[PATH_MAX_LEN];
        pool_t child = {0};
        join(cpath, path, key);
        join(cspath, spath, key);
        for (size_t i = 0; rc == 0 && i < pool->n; i++) {
            json_object *v = NULL;
            if (kind_of(pool->v[i]) == K_OBJECT && json_object_object_get_ex(pool->v[i], key, &v) &&
                pool_add(&child, v) != 0)
                rc = fail(c, cpath, "out of memory");
        }
        if (rc == 0 && child.n == 0 && kind_of(val) != K_STRING && kind_of(val) != K_BOOL)
            rc = fail(c, cpath, "must be a string"); /* an optional member no example shows: scalars only */
        else if (rc == 0 && child.n > 0)
            rc = check_node(c, &child, cpath, cspath, val);
        pool_free(&child);
        if (rc != 0)
            break;
    }
cleanup:
    pool_free(&cand);
    return rc;
}

static int check_array(checker_t *c, const pool_t *pool, const char *path, const char *spath, json_object *req)
{
    pool_t elems = {0};
    int rc = 0;
    int all_nonempty = 1;
    for (size_t i = 0; rc == 0 && i < pool->n; i++) {
        if (kind_of(pool->v[i]) != K_ARRAY)
            continue;
        size_t n = json_object_array_length(pool->v[i]);
        all_nonempty &= n > 0;
        for (size_t k = 0; rc == 0 && k < n; k++) {
            if (pool_add(&elems, json_object_array_get_idx(pool->v[i], k)) != 0)
                rc = fail(c, path, "out of memory");
        }
    }
    size_t n = json_object_array_length(req);
    if (rc == 0 && n == 0 && all_nonempty)
        rc = fail(c, path, "must not be empty (no example is)");
    char espath[PATH_MAX_LEN];
    if (snprintf(espath, sizeof espath, "%s[]", spath) >= (int)sizeof espath)
        espath[0] = '\0';
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char epath[PATH_MAX_LEN];
        if (snprintf(epath, sizeof epath, "%s[%zu]", path, i) >= (int)sizeof epath)
            epath[0] = '\0';
        rc = check_node(c, &elems, epath, espath, json_object_array_get_idx(req, i));
    }
    pool_free(&elems);
    return rc;
}

static int check_node(checker_t *c, const pool_t *pool, const char *path, const char *spath, json_object *req)
{
    kind_t k = kind_of(req);
    int seen = 0;
    for (size_t i = 0; i < pool->n; i++)
        seen |= 1 << kind_of(pool->v[i]);
    if (!(seen & (1 << k))) {
        kind_t want = K_NULL;
        for (kind_t t = K_BOOL; t <= K_ARRAY; t++) {
            if (seen & (1 << t)) {
                want = t;
                break;
            }
        }
        return fail(c, path, "is %s, the examples have %s", kind_name(k), kind_name(want));
    }
    if (k == K_OBJECT)
        return check_object(c, pool, path, spath, req);
    if (k == K_ARRAY)
        return check_array(c, pool, path, spath, req);
    return 0;
}

/* -------------------------------------------------------------- values */

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        n += (*p & 0xC0) != 0x80;
    return n;
}

/* A string member that must be present and 1..max characters (max 0: any). */
static int text_of(checker_t *c, json_object *obj, const char *key, const char *path, size_t max)
{
    const char *s = cmn_json_get_string(obj, key);
    if (s == NULL || s[0] == '\0')
        return fail(c, path, "must be a non-empty string");
    if (max > 0 && utf8_chars(s) > max)
        return fail(c, path, "is longer than %zu characters", max);
    return 0;
}

static int opt_text(checker_t *c, json_object *obj, const char *key, const char *path, size_t max)
{
    return cmn_json_has(obj, key) ? text_of(c, obj, key, path, max) : 0;
}

static int http_link(checker_t *c, json_object *media, const char *path)
{
    const char *s = cmn_json_get_string(media, "link");
    if (s == NULL)
        return 0; /* by id: the shape check already required one of the two */
    if (strncasecmp(s, "https://", 8) != 0 && strncasecmp(s, "http://", 7) != 0)
        return fail(c, path, "must be an http(s) URL");
    for (const char *p = s; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20)
            return fail(c, path, "must not contain spaces or control characters");
    }
    return 0;
}

static int check_interactive(checker_t *c, json_object *inter)
{
    const char *type = cmn_json_get_string(inter, "type");
    json_object *action = cmn_json_get_object(inter, "action");
    int rc = text_of(c, cmn_json_get_object(inter, "body"), "text", "interactive.body.text", 1024);
    if (rc == 0 && cmn_json_has(inter, "header"))
        rc = opt_text(c, cmn_json_get_object(inter, "header"), "text", "interactive.header.text", 60);
    if (rc == 0 && cmn_json_has(inter, "footer"))
        rc = text_of(c, cmn_json_get_object(inter, "footer"), "text", "interactive.footer.text", 60);
    if (rc != 0)
        return rc;
    if (type != NULL && strcmp(type, "button") == 0) {
        json_object *buttons = cmn_json_get_array(action, "buttons");
        size_t n = buttons != NULL ? json_object_array_length(buttons) : 0;
        if (n < 1 || n > 3)
            return fail(c, "interactive.action.buttons", "must hold 1 to 3 buttons");
        for (size_t i = 0; rc == 0 && i < n; i++) {
            json_object *reply = cmn_json_get_object(json_object_array_get_idx(buttons, i), "reply");
            char p[PATH_MAX_LEN];
            snprintf(p, sizeof p, "interactive.action.buttons[%zu].reply.title", i);
            rc = text_of(c, reply, "title", p, 20);
            if (rc == 0) {
                snprintf(p, sizeof p, "interactive.action.buttons[%zu].reply.id", i);
                rc = text_of(c, reply, "id", p, 256);
            }
        }
        return rc;
    }
    if (type != NULL && strcmp(type, "list") == 0) {
        rc = text_of(c, action, "button", "interactive.action.button", 20);
        json_object *sections = cmn_json_get_array(action, "sections");
        size_t ns = sections != NULL ? json_object_array_length(sections) : 0, rows_total = 0;
        if (rc == 0 && (ns < 1 || ns > 10))
            rc = fail(c, "interactive.action.sections", "must hold 1 to 10 sections");
        for (size_t s = 0; rc == 0 && s < ns; s++) {
            json_object *rows = cmn_json_get_array(json_object_array_get_idx(sections, s), "rows");
            size_t nr = rows != NULL ? json_object_array_length(rows) : 0;
            rows_total += nr;
            for (size_t r = 0; rc == 0 && r < nr; r++) {
                json_object *row = json_object_array_get_idx(rows, r);
                char p[PATH_MAX_LEN];
                snprintf(p, sizeof p, "interactive.action.sections[%zu].rows[%zu].title", s, r);
                rc = text_of(c, row, "title", p, 24);
                if (rc == 0) {
                    snprintf(p, sizeof p, "interactive.action.sections[%zu].rows[%zu].description", s, r);
                    rc = opt_text(c, row, "description", p, 72);
                }
            }
        }
        if (rc == 0 && rows_total > 10)
            rc = fail(c, "interactive.action.sections", "must hold at most 10 rows in all");
    }
    return rc;
}

static int check_values(checker_t *c, json_object *req)
{
    const char *s = cmn_json_get_string(req, "messaging_product");
    if (s == NULL || strcmp(s, "whatsapp") != 0)
        return fail(c, "messaging_product", "must be \"whatsapp\"");
    if (cmn_json_has(req, "recipient_type")) {
        s = cmn_json_get_string(req, "recipient_type");
        if (s == NULL || strcmp(s, "individual") != 0)
            return fail(c, "recipient_type", "must be \"individual\"");
    }
    s = cmn_json_get_string(req, "to");
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 15)
        return fail(c, "to", "must be the recipient's number: 1 to 15 digits");
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return fail(c, "to", "must be the recipient's number: 1 to 15 digits");
    }
    if (cmn_json_has(req, "biz_opaque_callback_data")) {
        s = cmn_json_get_string(req, "biz_opaque_callback_data");
        if (s == NULL || strlen(s) > OPAQUE_MAX)
            return fail(c, "biz_opaque_callback_data", "must be a string of at most %d characters", OPAQUE_MAX);
    }
    const char *type = cmn_json_get_string(req, "type");
    if (strcmp(type, "text") == 0)
        return text_of(c, cmn_json_get_object(req, "text"), "body", "text.body", 4096);
    if (strcmp(type, "template") == 0) {
        json_object *t = cmn_json_get_object(req, "template");
        int rc = text_of(c, t, "name", "template.name", 512);
        if (rc == 0)
            rc = text_of(c, cmn_json_get_object(t, "language"), "code", "template.language.code", 0);
        return rc;
    }
    if (strcmp(type, "image") == 0 || strcmp(type, "document") == 0) {
        json_object *m = cmn_json_get_object(req, type);
        char p[32];
        snprintf(p, sizeof p, "%s.link", type);
        int rc = http_link(c, m, p);
        snprintf(p, sizeof p, "%s.caption", type);
        if (rc == 0)
            rc = opt_text(c, m, "caption", p, 1024);
        return rc;
    }
    if (strcmp(type, "interactive") == 0)
        return check_interactive(c, cmn_json_get_object(req, "interactive"));
    return 0;
}

int msbx_check(const msbx_examples_t *ex, json_object *req, char *errstr, size_t errlen)
{
    checker_t c = {errstr, errlen, 0};
    pool_t pool = {0};
    int rc = 0;
    if (errlen > 0)
        errstr[0] = '\0';
    if (kind_of(req) != K_OBJECT)
        return fail(&c, "", "must be a JSON object");
    const char *type = cmn_json_get_string(req, "type");
    if (type == NULL)
        return fail(&c, "type", "is required (a string)");
    for (size_t i = 0; rc == 0 && i < ex->n; i++) {
        if (strcmp(cmn_json_get_string(ex->items[i], "type"), type) == 0 && pool_add(&pool, ex->items[i]) != 0)
            rc = fail(&c, "", "out of memory");
    }
    if (rc == 0 && pool.n == 0) {
        char types[200] = "";
        for (size_t i = 0; i < ex->ntypes; i++) {
            if (strlen(types) + strlen(ex->types[i]) + 3 < sizeof types) {
                strcat(types, i > 0 ? ", " : "");
                strcat(types, ex->types[i]);
            }
        }
        rc = fail(&c, "type", "'%s' is not one of the examples' types (%s)", type, types);
    }
    if (rc == 0)
        rc = check_node(&c, &pool, "", "", req);
    if (rc == 0)
        rc = check_values(&c, req);
    pool_free(&pool);
    return rc;
}
