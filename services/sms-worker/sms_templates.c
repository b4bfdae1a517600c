/* sms_templates.c - one-file template lookup, cache and rendering. See
 * sms_templates.h. */
#include "sms_templates.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crm/err.h"
#include "crm/mustache.h"

/* Bound on cached entries (templates and partials, found or missing). Names
 * and locales come from records, so without a bound a stream of made-up
 * locales could grow the cache forever; past it, lookups still work but read
 * the disk each time. */
#define CACHE_MAX 1024
#define PARTIALS_DIR "_partials"
/* Partials rendered in one message that could not be cached (cache full). */
#define PARKED_MAX 16

/* One cache entry: key is "<name>/<locale>" or "_partials/<name>". */
typedef struct tmpl_entry {
    char *key;
    char *text; /* NULL: looked up and not there */
} tmpl_entry_t;

struct sms_templates {
    char *dir;
    char *file;
    char fallback[SMS_LOCALE_MAX + 1];
    tmpl_entry_t *entries;
    size_t n, cap;
};

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

/* Reads a whole file into *out (malloc'd). Returns 0, CMN_ERR_NOTFOUND when
 * it does not exist, CMN_ERR_OVERFLOW when too large, CMN_ERR_IO otherwise. */
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
    buf = malloc(SMS_TEMPLATE_MAX_BYTES + 1);
    if (buf == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    size_t n = fread(buf, 1, SMS_TEMPLATE_MAX_BYTES + 1, f);
    if (ferror(f)) {
        rc = CMN_ERR_IO;
        goto cleanup;
    }
    if (n > SMS_TEMPLATE_MAX_BYTES) {
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

sms_templates_t *sms_templates_new(const char *dir, const char *file, const char *fallback_locale, char *errstr,
                                   size_t errlen)
{
    struct stat st;
    sms_templates_t *t = NULL;
    if (dir == NULL || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(errstr, errlen, "templates directory %s is not a directory", dir != NULL ? dir : "(null)");
        return NULL;
    }
    if (!valid_component(file)) {
        snprintf(errstr, errlen, "template file name is not valid");
        return NULL;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    if (fallback_locale == NULL || cmn_locale_normalize(fallback_locale, t->fallback, sizeof t->fallback) != 0) {
        snprintf(errstr, errlen, "fallback locale is not a BCP 47 language tag");
        goto fail;
    }
    t->dir = strdup(dir);
    t->file = strdup(file);
    if (t->dir == NULL || t->file == NULL) {
        snprintf(errstr, errlen, "out of memory");
        goto fail;
    }
    return t;
fail:
    sms_templates_destroy(t);
    return NULL;
}

void sms_templates_destroy(sms_templates_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->entries[i].key);
        free(t->entries[i].text);
    }
    free(t->entries);
    free(t->dir);
    free(t->file);
    free(t);
}

size_t sms_templates_locale_chain(const char *locale, const char *fallback, char chain[][SMS_LOCALE_MAX + 1],
                                  size_t max)
{
    size_t n = 0;
    char tag[SMS_LOCALE_MAX + 1];
    char fb[SMS_LOCALE_MAX + 1];
    if (max == 0)
        return 0;
    if (locale != NULL && cmn_locale_normalize(locale, tag, sizeof tag) == 0) {
        /* The tag, then each shorter prefix at a subtag boundary; one slot
         * stays free for the fallback. */
        int more = 1;
        while (more && n < max - 1) {
            memcpy(chain[n++], tag, sizeof tag);
            char *dash = strrchr(tag, '-');
            more = dash != NULL;
            if (more)
                *dash = '\0';
        }
    }
    if (fallback == NULL || cmn_locale_normalize(fallback, fb, sizeof fb) != 0)
        return n;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(chain[i], fb) == 0)
            return n;
    }
    memcpy(chain[n++], fb, sizeof fb);
    return n;
}

/* Finds the text for key, loading path on a miss. *text is NULL when the
 * file does not exist. When the cache is full the loaded text is handed back
 * in *uncached too, and the caller frees it after use. */
static int lookup(sms_templates_t *t, const char *key, const char *path, const char **text, char **uncached)
{
    *text = NULL;
    *uncached = NULL;
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->entries[i].key, key) == 0) {
            *text = t->entries[i].text;
            return 0;
        }
    }
    char *loaded = NULL;
    int rc = read_file(path, &loaded);
    if (rc == CMN_ERR_NOTFOUND)
        rc = 0; /* remembered as missing */
    if (rc != 0)
        return rc;
    if (t->n < CACHE_MAX && t->n == t->cap) {
        size_t cap = t->cap != 0 ? t->cap * 2 : 32;
        tmpl_entry_t *grown = realloc(t->entries, cap * sizeof *grown);
        if (grown != NULL) {
            t->entries = grown;
            t->cap = cap;
        }
    }
    char *key_copy = (t->n < CACHE_MAX && t->n < t->cap) ? strdup(key) : NULL;
    if (key_copy == NULL) {
        *text = loaded;
        *uncached = loaded;
        return 0;
    }
    t->entries[t->n].key = key_copy;
    t->entries[t->n].text = loaded;
    t->n++;
    *text = loaded;
    return 0;
}

/* The partial loader handed to the renderer. Cached texts live as long as
 * t; uncached ones are parked here and freed after rendering. */
typedef struct partial_ctx {
    sms_templates_t *t;
    char *parked[PARKED_MAX];
    size_t nparked;
} partial_ctx_t;

static const char *load_partial(void *ctx, const char *name)
{
    partial_ctx_t *pc = ctx;
    char key[256], path[4096];
    const char *text = NULL;
    char *uncached = NULL;
    if (!valid_component(name))
        return NULL;
    int k = snprintf(key, sizeof key, PARTIALS_DIR "/%s", name);
    int p = snprintf(path, sizeof path, "%s/" PARTIALS_DIR "/%s.mustache", pc->t->dir, name);
    if (k < 0 || (size_t)k >= sizeof key || p < 0 || (size_t)p >= sizeof path)
        return NULL;
    if (lookup(pc->t, key, path, &text, &uncached) != 0)
        return NULL;
    if (uncached != NULL) {
        if (pc->nparked == PARKED_MAX) {
            free(uncached);
            return NULL;
        }
        pc->parked[pc->nparked++] = uncached;
    }
    return text;
}

static void trim_trailing_space(cmn_buf_t *b)
{
    while (b->len > 0 && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r' ||
                          b->data[b->len - 1] == ' ' || b->data[b->len - 1] == '\t'))
        b->data[--b->len] = '\0';
}

int sms_templates_render(sms_templates_t *t, const char *name, const char *locale, json_object *data,
                         cmn_buf_t *out, char locale_used[SMS_LOCALE_MAX + 1], char *errstr, size_t errlen)
{
    char chain[SMS_LOCALE_CHAIN_MAX][SMS_LOCALE_MAX + 1];
    char key[256], path[4096], why[256] = "";
    partial_ctx_t pc = {.t = t, .nparked = 0};
    const char *text = NULL;
    char *uncached = NULL;
    int rc = 0;

    locale_used[0] = '\0';
    if (t == NULL || out == NULL || !valid_component(name) || name[0] == '_') {
        snprintf(errstr, errlen, "template name is not valid");
        return CMN_ERR_INVALID;
    }
    cmn_buf_reset(out);
    size_t n = sms_templates_locale_chain(locale, t->fallback, chain, SMS_LOCALE_CHAIN_MAX);
    for (size_t i = 0; i < n && text == NULL; i++) {
        int k = snprintf(key, sizeof key, "%s/%s", name, chain[i]);
        int p = snprintf(path, sizeof path, "%s/%s/%s/%s", t->dir, name, chain[i], t->file);
        if (k < 0 || (size_t)k >= sizeof key || p < 0 || (size_t)p >= sizeof path) {
            snprintf(errstr, errlen, "template path too long");
            rc = CMN_ERR_INVALID;
            goto cleanup;
        }
        rc = lookup(t, key, path, &text, &uncached);
        if (rc != 0) {
            snprintf(errstr, errlen, "template %s/%s/%s cannot be loaded: %s", name, chain[i], t->file,
                     cmn_strerror(rc));
            /* A file over the size limit is a broken deployment that no
             * retry can mend; a read error may be passing. */
            if (rc == CMN_ERR_OVERFLOW)
                rc = CMN_ERR_TEMPLATE;
            goto cleanup;
        }
        if (text != NULL)
            memcpy(locale_used, chain[i], SMS_LOCALE_MAX + 1);
    }
    if (text == NULL) {
        snprintf(errstr, errlen, "no %s for %s in locale %s or its fallbacks", t->file, name,
                 n > 0 ? chain[0] : t->fallback);
        rc = CMN_ERR_NOTFOUND;
        goto cleanup;
    }
    cmn_mustache_opts_t opts = {.escape_html = 0, .partial = load_partial, .partial_ctx = &pc};
    rc = cmn_mustache_render(text, strlen(text), data, &opts, out, why, sizeof why);
    if (rc != 0) {
        snprintf(errstr, errlen, "%s/%s/%s: %s", name, locale_used, t->file, why[0] != '\0' ? why : cmn_strerror(rc));
        goto cleanup;
    }
    trim_trailing_space(out);
    /* An empty render leaves out without storage; hand back "" instead. */
    rc = cmn_buf_puts(out, "");
cleanup:
    free(uncached);
    for (size_t i = 0; i < pc.nparked; i++)
        free(pc.parked[i]);
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

json_object *sms_templates_data_new(json_object *context, const cmn_recipient_t *r)
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
            rc = add_string(recipient, "phone", r->phone);
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
