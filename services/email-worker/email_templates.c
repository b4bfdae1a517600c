/* email_templates.c - template lookup, cache and rendering. See email_templates.h. */
#include "email_templates.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/mustache.h"

/* Bound on cached entries (template sets and partials, found or missing).
 * Names and locales come from records, so without a bound a stream of made-up
 * locales could grow the cache forever; past it, lookups still work but read
 * the disk each time. */
#define CACHE_MAX 1024
#define PARTIALS_DIR "_partials"

enum { F_SUBJECT, F_TEXT, F_HTML, F__COUNT };
static const char *const FILE_NAMES[F__COUNT] = {"subject.mustache", "body.txt.mustache", "body.html.mustache"};

/* One cache entry. key is "<name>/<locale>" for a template set or
 * "_partials/<name>" for a partial. Immutable once published. */
typedef struct tmpl_entry {
    char *key;
    int present;              /* 0: looked up and not there */
    char *text[F__COUNT];     /* template sources; partials use text[0]; html may be NULL */
} tmpl_entry_t;

struct email_templates {
    char *dir;
    char fallback[EMAIL_LOCALE_MAX + 1];
    pthread_mutex_t lock;     /* guards entries/n/cap, not the entries' contents */
    tmpl_entry_t **entries;
    size_t n, cap;
};

static void entry_free(tmpl_entry_t *e)
{
    if (e == NULL)
        return;
    free(e->key);
    for (int i = 0; i < F__COUNT; i++)
        free(e->text[i]);
    free(e);
}

/* Reads a whole file. Returns 0 with *out malloc'd, CMN_ERR_NOTFOUND when it
 * does not exist, CMN_ERR_OVERFLOW when too large, CMN_ERR_IO otherwise. */
static int read_file(const char *path, char **out)
{
    int rc = 0;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    *out = NULL;
    if (f == NULL) {
        rc = (errno == ENOENT || errno == ENOTDIR) ? CMN_ERR_NOTFOUND : CMN_ERR_IO;
        goto cleanup;
    }
    buf = malloc(EMAIL_TEMPLATE_MAX_BYTES + 1);
    if (buf == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    size_t n = fread(buf, 1, EMAIL_TEMPLATE_MAX_BYTES + 1, f);
    if (ferror(f)) {
        rc = CMN_ERR_IO;
        goto cleanup;
    }
    if (n > EMAIL_TEMPLATE_MAX_BYTES) {
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

/* A subject is one line: drop the trailing whitespace and line breaks the
 * file ends with, so only data can put a line break into it. */
static void trim_trailing_space(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

/* Names become path components: letters, digits, '_', '.', '-', not
 * starting with '.', so "..", "/" and hidden files are unreachable. */
static int valid_component(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 128 || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                 c == '.' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

/* Loads an entry from disk (not published yet). For a partial, name is the
 * partial name and locale NULL. */
static int entry_load(const email_templates_t *t, const char *name, const char *locale, tmpl_entry_t **out)
{
    int rc = 0;
    char path[4096];
    tmpl_entry_t *e = calloc(1, sizeof *e);
    cmn_buf_t key = CMN_BUF_INIT;
    *out = NULL;
    if (e == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    rc = locale != NULL ? cmn_buf_printf(&key, "%s/%s", name, locale) : cmn_buf_printf(&key, PARTIALS_DIR "/%s", name);
    if (rc != 0)
        goto cleanup;
    e->key = cmn_buf_steal(&key);
    if (locale == NULL) {
        int n = snprintf(path, sizeof path, "%s/" PARTIALS_DIR "/%s.mustache", t->dir, name);
        if (n < 0 || (size_t)n >= sizeof path) {
            rc = CMN_ERR_OVERFLOW;
            goto cleanup;
        }
        rc = read_file(path, &e->text[0]);
        e->present = rc == 0;
        if (rc == CMN_ERR_NOTFOUND)
            rc = 0;
        goto cleanup;
    }
    for (int i = 0; i < F__COUNT; i++) {
        int n = snprintf(path, sizeof path, "%s/%s/%s/%s", t->dir, name, locale, FILE_NAMES[i]);
        if (n < 0 || (size_t)n >= sizeof path) {
            rc = CMN_ERR_OVERFLOW;
            goto cleanup;
        }
        rc = read_file(path, &e->text[i]);
        if (rc == CMN_ERR_NOTFOUND && i == F_SUBJECT) {
            rc = 0; /* no subject: this locale has no set (cached as absent) */
            goto cleanup;
        }
        if (rc == CMN_ERR_NOTFOUND && i == F_HTML) {
            rc = 0; /* no HTML: a text-only email */
            continue;
        }
        /* A subject without body.txt comes back as CMN_ERR_NOTFOUND: a
         * broken set, which the caller reports as such. */
        if (rc != 0)
            goto cleanup;
    }
    trim_trailing_space(e->text[F_SUBJECT]);
    e->present = 1;
cleanup:
    cmn_buf_free(&key);
    if (rc != 0) {
        entry_free(e);
        e = NULL;
    }
    *out = e;
    return rc;
}

/* Returns the cached entry for (name, locale), loading it on a miss. The
 * entry stays valid until email_templates_destroy(). When the cache is full
 * the loaded entry is handed back in *uncached and the caller frees it. */
static int lookup(email_templates_t *t, const char *name, const char *locale, const tmpl_entry_t **out,
                  tmpl_entry_t **uncached)
{
    char key[512];
    int n = locale != NULL ? snprintf(key, sizeof key, "%s/%s", name, locale)
                           : snprintf(key, sizeof key, PARTIALS_DIR "/%s", name);
    *out = NULL;
    *uncached = NULL;
    if (n < 0 || (size_t)n >= sizeof key)
        return CMN_ERR_INVALID;

    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->entries[i]->key, key) == 0) {
            *out = t->entries[i];
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (*out != NULL)
        return 0;

    /* Loaded outside the lock: two threads may load the same entry at once;
     * the second to publish finds the first's and drops its own. */
    tmpl_entry_t *e = NULL;
    int rc = entry_load(t, name, locale, &e);
    if (rc != 0)
        return rc;

    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->entries[i]->key, key) == 0) {
            *out = t->entries[i];
            break;
        }
    }
    if (*out == NULL && t->n < CACHE_MAX) {
        if (t->n == t->cap) {
            size_t cap = t->cap != 0 ? t->cap * 2 : 32;
            tmpl_entry_t **grown = realloc(t->entries, cap * sizeof *grown);
            if (grown != NULL) {
                t->entries = grown;
                t->cap = cap;
            }
        }
        if (t->n < t->cap) {
            t->entries[t->n++] = e;
            *out = e;
            e = NULL;
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (*out == NULL) {
        *out = e;
        *uncached = e;
    } else {
        entry_free(e);
    }
    return 0;
}

email_templates_t *email_templates_new(const char *dir, const char *fallback_locale, char *errstr, size_t errlen)
{
    email_templates_t *t = NULL;
    struct stat st;
    if (dir == NULL || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(errstr, errlen, "templates directory %s is not a directory", dir != NULL ? dir : "(null)");
        goto fail;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errstr, errlen, "out of memory");
        goto fail;
    }
    if (cmn_locale_normalize(fallback_locale, t->fallback, sizeof t->fallback) != 0) {
        snprintf(errstr, errlen, "fallback locale is not a BCP 47 language tag");
        goto fail;
    }
    t->dir = strdup(dir);
    if (t->dir == NULL || pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t->dir);
        t->dir = NULL;
        snprintf(errstr, errlen, "out of memory");
        goto fail;
    }
    return t;
fail:
    free(t);
    return NULL;
}

void email_templates_destroy(email_templates_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        entry_free(t->entries[i]);
    free(t->entries);
    free(t->dir);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void email_rendered_clear(email_rendered_t *r)
{
    if (r == NULL)
        return;
    free(r->subject);
    free(r->text);
    free(r->html);
    memset(r, 0, sizeof *r);
}

size_t email_templates_locale_chain(const char *locale, const char *fallback,
                                    char chain[][EMAIL_LOCALE_MAX + 1], size_t max)
{
    size_t n = 0;
    char tag[EMAIL_LOCALE_MAX + 1];
    if (max == 0)
        return 0;
    if (locale != NULL && cmn_locale_normalize(locale, tag, sizeof tag) == 0) {
        /* Each shorter prefix at a subtag boundary, longest first. */
        while (n < max - 1) {
            snprintf(chain[n++], EMAIL_LOCALE_MAX + 1, "%s", tag);
            char *dash = strrchr(tag, '-');
            if (dash == NULL)
                break;
            *dash = '\0';
        }
    }
    char fb[EMAIL_LOCALE_MAX + 1];
    if (fallback == NULL || cmn_locale_normalize(fallback, fb, sizeof fb) != 0)
        return n;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(chain[i], fb) == 0)
            return n;
    }
    snprintf(chain[n++], EMAIL_LOCALE_MAX + 1, "%s", fb);
    return n;
}

/* The partial loader handed to the renderer. Entries live as long as t, so
 * the returned text outlives the render; uncached partials (cache full) are
 * parked in the render context and freed after rendering. */
typedef struct partial_ctx {
    email_templates_t *t;
    tmpl_entry_t *parked[16];
    size_t nparked;
} partial_ctx_t;

static const char *load_partial(void *ctx, const char *name)
{
    partial_ctx_t *pc = ctx;
    const tmpl_entry_t *e = NULL;
    tmpl_entry_t *uncached = NULL;
    if (!valid_component(name) || lookup(pc->t, name, NULL, &e, &uncached) != 0)
        return NULL;
    if (uncached != NULL) {
        if (pc->nparked == sizeof pc->parked / sizeof pc->parked[0]) {
            entry_free(uncached);
            return NULL;
        }
        pc->parked[pc->nparked++] = uncached;
    }
    return e->present ? e->text[0] : NULL;
}

static int render_one(const char *tmpl, json_object *data, int escape_html, partial_ctx_t *pc, char **out,
                      const char *what, char *errstr, size_t errlen)
{
    cmn_buf_t buf = CMN_BUF_INIT;
    char why[256] = "";
    cmn_mustache_opts_t opts = {.escape_html = escape_html, .partial = load_partial, .partial_ctx = pc};
    int rc = cmn_mustache_render(tmpl, strlen(tmpl), data, &opts, &buf, why, sizeof why);
    if (rc == 0) {
        /* An empty render leaves buf without storage; hand back "" instead. */
        rc = cmn_buf_puts(&buf, "");
    }
    if (rc == 0) {
        *out = cmn_buf_steal(&buf);
    } else {
        snprintf(errstr, errlen, "%s: %s", what, why[0] != '\0' ? why : cmn_strerror(rc));
    }
    cmn_buf_free(&buf);
    return rc;
}

int email_templates_render(email_templates_t *t, const char *name, const char *locale, json_object *data,
                           email_rendered_t *out, char *errstr, size_t errlen)
{
    char chain[EMAIL_LOCALE_CHAIN_MAX][EMAIL_LOCALE_MAX + 1];
    partial_ctx_t pc = {.t = t};
    const tmpl_entry_t *e = NULL;
    tmpl_entry_t *uncached = NULL;
    int rc = 0;

    if (t == NULL || out == NULL || !valid_component(name) || name[0] == '_') {
        snprintf(errstr, errlen, "template name is not valid");
        return CMN_ERR_INVALID;
    }
    size_t n = email_templates_locale_chain(locale, t->fallback, chain, EMAIL_LOCALE_CHAIN_MAX);
    for (size_t i = 0; i < n; i++) {
        rc = lookup(t, name, chain[i], &e, &uncached);
        if (rc != 0) {
            snprintf(errstr, errlen, "templates %s/%s cannot be loaded: %s", name, chain[i],
                     rc == CMN_ERR_NOTFOUND ? "subject without body.txt" : cmn_strerror(rc));
            /* A set with a subject but no body, or a file over the size
             * limit, is a broken deployment that no retry can mend. */
            if (rc == CMN_ERR_NOTFOUND || rc == CMN_ERR_OVERFLOW)
                rc = CMN_ERR_TEMPLATE;
            goto cleanup;
        }
        if (e->present) {
            memcpy(out->locale, chain[i], sizeof out->locale); /* same size, NUL-terminated */
            break;
        }
        entry_free(uncached);
        uncached = NULL;
        e = NULL;
    }
    if (e == NULL) {
        snprintf(errstr, errlen, "no templates for %s in locale %s or its fallbacks", name,
                 n > 0 ? chain[0] : t->fallback);
        rc = CMN_ERR_NOTFOUND;
        goto cleanup;
    }
    rc = render_one(e->text[F_SUBJECT], data, 0, &pc, &out->subject, "subject", errstr, errlen);
    if (rc == 0)
        rc = render_one(e->text[F_TEXT], data, 0, &pc, &out->text, "body.txt", errstr, errlen);
    if (rc == 0 && e->text[F_HTML] != NULL)
        rc = render_one(e->text[F_HTML], data, 1, &pc, &out->html, "body.html", errstr, errlen);
cleanup:
    entry_free(uncached);
    for (size_t i = 0; i < pc.nparked; i++)
        entry_free(pc.parked[i]);
    return rc;
}

/* Adds key -> value to obj taking a new reference on value. */
static int add_ref(json_object *obj, const char *key, json_object *value)
{
    json_object *ref = json_object_get(value);
    if (json_object_object_add(obj, key, ref) != 0) {
        json_object_put(ref);
        return CMN_ERR_NOMEM;
    }
    return 0;
}

static int add_string(json_object *obj, const char *key, const char *value)
{
    if (value == NULL)
        return 0;
    json_object *s = json_object_new_string(value);
    if (s == NULL || json_object_object_add(obj, key, s) != 0) {
        json_object_put(s);
        return CMN_ERR_NOMEM;
    }
    return 0;
}

json_object *email_templates_data_new(json_object *context, const cmn_recipient_t *r)
{
    int rc = 0;
    json_object *data = json_object_new_object();
    json_object *recipient = json_object_new_object();
    if (data == NULL || recipient == NULL)
        goto fail;
    if (context != NULL && json_object_is_type(context, json_type_object)) {
        json_object_object_foreach(context, key, val)
        {
            if (strcmp(key, "recipient") == 0 && json_object_is_type(val, json_type_object)) {
                json_object_object_foreach(val, rkey, rval)
                {
                    if (rc == 0)
                        rc = add_ref(recipient, rkey, rval);
                }
            } else if (rc == 0) {
                rc = add_ref(data, key, val);
            }
        }
    }
    /* The dispatch's recipient is the validated one: it wins over a
     * "recipient" object a producer put into the context. */
    if (rc == 0 && r != NULL) {
        rc = add_string(recipient, "name", r->name);
        if (rc == 0)
            rc = add_string(recipient, "email", r->email);
        if (rc == 0)
            rc = add_string(recipient, "locale", r->locale);
    }
    if (rc != 0)
        goto fail;
    if (json_object_object_add(data, "recipient", recipient) != 0)
        goto fail;
    return data;
fail:
    json_object_put(recipient);
    json_object_put(data);
    return NULL;
}
