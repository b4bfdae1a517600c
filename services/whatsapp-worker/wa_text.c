/* wa_text.c - loading and rendering the free-text templates. See wa_text.h. */
#include "wa_text.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crm/err.h"
#include "crm/mustache.h"
#include "wa_templates.h"

#define PARTIALS_DIR "_partials"
#define PARTIAL_SUFFIX ".mustache"
#define CHAIN_MAX 6

typedef struct text_entry {
    char *name;                           /* message type or template name */
    char locale[WA_TPL_LOCALE_MAX + 1];   /* normalised */
    char *text;
} text_entry_t;

typedef struct partial {
    char *name;
    char *text;
} partial_t;

struct wa_text {
    char fallback[WA_TPL_LOCALE_MAX + 1];
    text_entry_t *entries;
    size_t n, cap;
    partial_t *partials;
    size_t np, pcap;
};

/* Reads a whole file of at most WA_TEXT_MAX_BYTES into *out (malloc'd). */
static int read_file(const char *path, char **out)
{
    int rc = 0;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    *out = NULL;
    if (f == NULL) {
        rc = errno == ENOENT ? CMN_ERR_NOTFOUND : CMN_ERR_IO;
        goto cleanup;
    }
    buf = malloc(WA_TEXT_MAX_BYTES + 1);
    if (buf == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    size_t n = fread(buf, 1, WA_TEXT_MAX_BYTES + 1, f);
    if (ferror(f)) {
        rc = CMN_ERR_IO;
        goto cleanup;
    }
    if (n > WA_TEXT_MAX_BYTES) {
        rc = CMN_ERR_OVERFLOW;
        goto cleanup;
    }
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
cleanup:
    free(buf);
    if (f != NULL)
        fclose(f);
    return rc;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static const char *partial_lookup(void *ctx, const char *name)
{
    const wa_text_t *t = ctx;
    for (size_t i = 0; i < t->np; i++) {
        if (strcmp(t->partials[i].name, name) == 0)
            return t->partials[i].text;
    }
    return NULL;
}

static int render_raw(const wa_text_t *t, const char *tmpl, json_object *data, cmn_buf_t *out, char *errstr,
                      size_t errlen)
{
    cmn_mustache_opts_t opts = {.escape_html = 0, .partial = partial_lookup, .partial_ctx = (void *)t};
    cmn_buf_reset(out);
    int rc = cmn_mustache_render(tmpl, strlen(tmpl), data, &opts, out, errstr, errlen);
    if (rc != 0)
        return rc;
    /* The file's final line break is the editor's, not the message's. */
    while (out->len > 0 && (out->data[out->len - 1] == '\n' || out->data[out->len - 1] == '\r' ||
                            out->data[out->len - 1] == ' ' || out->data[out->len - 1] == '\t'))
        out->data[--out->len] = '\0';
    return 0;
}

static int load_partials(wa_text_t *t, const char *dir, char *errstr, size_t errlen)
{
    char path[4096];
    int rc = 0;
    snprintf(path, sizeof path, "%s/" PARTIALS_DIR, dir);
    DIR *d = opendir(path);
    if (d == NULL)
        return 0; /* no partials: {{> x}} renders empty, as the spec says */
    for (;;) {
        struct dirent *de = readdir(d);
        if (de == NULL)
            break;
        size_t len = strlen(de->d_name);
        size_t slen = strlen(PARTIAL_SUFFIX);
        if (de->d_name[0] == '.' || len <= slen || strcmp(de->d_name + len - slen, PARTIAL_SUFFIX) != 0)
            continue;
        if (t->np == t->pcap) {
            size_t cap = t->pcap > 0 ? 2 * t->pcap : 8;
            partial_t *p = realloc(t->partials, cap * sizeof *p);
            if (p == NULL) {
                rc = CMN_ERR_NOMEM;
                break;
            }
            t->partials = p;
            t->pcap = cap;
        }
        partial_t *p = &t->partials[t->np];
        int n = snprintf(path, sizeof path, "%s/" PARTIALS_DIR "/%s", dir, de->d_name);
        if (n < 0 || (size_t)n >= sizeof path) {
            snprintf(errstr, errlen, "%s/" PARTIALS_DIR ": path too long", dir);
            rc = CMN_ERR_OVERFLOW;
            break;
        }
        p->name = strndup(de->d_name, len - slen);
        p->text = NULL;
        if (p->name == NULL) {
            rc = CMN_ERR_NOMEM;
            break;
        }
        t->np++;
        rc = read_file(path, &p->text);
        if (rc != 0) {
            snprintf(errstr, errlen, "%s: %s", path, cmn_strerror(rc));
            break;
        }
    }
    closedir(d);
    return rc;
}

/* Loads <dir>/<name>/<locale>/<file> for every locale directory of name. */
static int load_type(wa_text_t *t, const char *dir, const char *name, const char *file, char *errstr, size_t errlen)
{
    char path[4096];
    char why[256];
    int rc = 0;
    cmn_buf_t scratch = CMN_BUF_INIT;
    json_object *empty = json_object_new_object();
    snprintf(path, sizeof path, "%s/%s", dir, name);
    DIR *d = opendir(path);
    if (d == NULL || empty == NULL) {
        rc = d == NULL ? 0 : CMN_ERR_NOMEM; /* vanished since the scan: nothing to load */
        goto cleanup;
    }
    for (;;) {
        struct dirent *de = readdir(d);
        if (de == NULL)
            break;
        char locale[WA_TPL_LOCALE_MAX + 1];
        if (de->d_name[0] == '.' || cmn_locale_normalize(de->d_name, locale, sizeof locale) != 0)
            continue;
        int n = snprintf(path, sizeof path, "%s/%s/%s/%s", dir, name, de->d_name, file);
        if (n < 0 || (size_t)n >= sizeof path)
            continue;
        char *text = NULL;
        rc = read_file(path, &text);
        if (rc == CMN_ERR_NOTFOUND) {
            rc = 0; /* this locale has email or SMS templates only */
            continue;
        }
        if (rc != 0) {
            snprintf(errstr, errlen, "%s: %s", path, rc == CMN_ERR_OVERFLOW ? "larger than 64 KiB" : cmn_strerror(rc));
            goto cleanup;
        }
        if (t->n == t->cap) {
            size_t cap = t->cap > 0 ? 2 * t->cap : 32;
            text_entry_t *e = realloc(t->entries, cap * sizeof *e);
            if (e == NULL) {
                free(text);
                rc = CMN_ERR_NOMEM;
                goto cleanup;
            }
            t->entries = e;
            t->cap = cap;
        }
        text_entry_t *e = &t->entries[t->n];
        memcpy(e->locale, locale, sizeof e->locale);
        e->text = text;
        e->name = strdup(name);
        t->n++;
        if (e->name == NULL) {
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
        /* A syntax error shows with any data; catch it now, not per message. */
        rc = render_raw(t, e->text, empty, &scratch, why, sizeof why);
        if (rc != 0) {
            snprintf(errstr, errlen, "%s: %s", path, why);
            goto cleanup;
        }
    }
cleanup:
    if (d != NULL)
        closedir(d);
    json_object_put(empty);
    cmn_buf_free(&scratch);
    return rc;
}

wa_text_t *wa_text_new(const char *dir, const char *file, const char *fallback_locale, char *errstr,
                       size_t errlen)
{
    int rc = 0;
    DIR *d = NULL;
    wa_text_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    if (cmn_locale_normalize(fallback_locale, t->fallback, sizeof t->fallback) != 0) {
        snprintf(errstr, errlen, "fallback locale: must be a locale like en");
        rc = CMN_ERR_CONFIG;
        goto cleanup;
    }
    if (dir == NULL || !is_dir(dir)) {
        snprintf(errstr, errlen, "%s: not a readable directory", dir != NULL ? dir : "(null)");
        rc = CMN_ERR_CONFIG;
        goto cleanup;
    }
    rc = load_partials(t, dir, errstr, errlen);
    if (rc != 0)
        goto cleanup;
    d = opendir(dir);
    if (d == NULL) {
        snprintf(errstr, errlen, "%s: cannot be read", dir);
        rc = CMN_ERR_IO;
        goto cleanup;
    }
    for (;;) {
        struct dirent *de = readdir(d);
        if (de == NULL)
            break;
        /* "_partials" and hidden entries are not message types. */
        if (de->d_name[0] == '.' || de->d_name[0] == '_' || !cmn_valid_template_name(de->d_name))
            continue;
        rc = load_type(t, dir, de->d_name, file, errstr, errlen);
        if (rc != 0)
            goto cleanup;
    }
cleanup:
    if (d != NULL)
        closedir(d);
    if (rc == CMN_ERR_NOMEM)
        snprintf(errstr, errlen, "out of memory");
    if (rc != 0) {
        wa_text_destroy(t);
        return NULL;
    }
    return t;
}

void wa_text_destroy(wa_text_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->entries[i].name);
        free(t->entries[i].text);
    }
    for (size_t i = 0; i < t->np; i++) {
        free(t->partials[i].name);
        free(t->partials[i].text);
    }
    free(t->entries);
    free(t->partials);
    free(t);
}

size_t wa_text_count(const wa_text_t *t)
{
    return t != NULL ? t->n : 0;
}

static const text_entry_t *find(const wa_text_t *t, const char *name, const char *locale)
{
    char chain[CHAIN_MAX][WA_TPL_LOCALE_MAX + 1];
    if (t == NULL || name == NULL)
        return NULL;
    size_t nc = wa_locale_chain(locale, t->fallback, chain, CHAIN_MAX);
    for (size_t c = 0; c < nc; c++) {
        for (size_t i = 0; i < t->n; i++) {
            if (strcmp(t->entries[i].name, name) == 0 && strcmp(t->entries[i].locale, chain[c]) == 0)
                return &t->entries[i];
        }
    }
    return NULL;
}

int wa_text_has(const wa_text_t *t, const char *name, const char *locale)
{
    return find(t, name, locale) != NULL;
}

int wa_text_render(const wa_text_t *t, const char *name, const char *locale, json_object *data, cmn_buf_t *out,
                   char *errstr, size_t errlen)
{
    char why[200] = "";
    const text_entry_t *e = find(t, name, locale);
    if (e == NULL) {
        snprintf(errstr, errlen, "no " WA_TEXT_FILE " for %s in the locale or its fallback",
                 name != NULL ? name : "(none)");
        return CMN_ERR_NOTFOUND;
    }
    int rc = render_raw(t, e->text, data, out, why, sizeof why);
    if (rc == CMN_ERR_NOMEM)
        snprintf(errstr, errlen, "out of memory");
    else if (rc != 0)
        snprintf(errstr, errlen, "%s/%s/" WA_TEXT_FILE ": %s", e->name, e->locale, why);
    return rc;
}

json_object *wa_text_data_new(json_object *context, const cmn_recipient_t *r)
{
    json_object *data = json_object_new_object();
    json_object *rec = json_object_new_object();
    if (data == NULL || rec == NULL)
        goto fail;
    if (context != NULL && json_object_is_type(context, json_type_object)) {
        json_object_object_foreach(context, key, val)
        {
            if (strcmp(key, "recipient") == 0 && json_object_is_type(val, json_type_object)) {
                json_object_object_foreach(val, rkey, rval)
                {
                    if (json_object_object_add(rec, rkey, json_object_get(rval)) != 0)
                        goto fail;
                }
                continue;
            }
            if (json_object_object_add(data, key, json_object_get(val)) != 0)
                goto fail;
        }
    }
    if (r != NULL && r->name != NULL && json_object_object_add(rec, "name", json_object_new_string(r->name)) != 0)
        goto fail;
    if (r != NULL && r->locale != NULL &&
        json_object_object_add(rec, "locale", json_object_new_string(r->locale)) != 0)
        goto fail;
    if (json_object_object_add(data, "recipient", rec) != 0)
        goto fail;
    return data;
fail:
    json_object_put(rec);
    json_object_put(data);
    return NULL;
}
