/* templates.c - template lookup, locale fallback, cache and rendering shared
 * by the channel workers. See crm/templates.h. */
#include "crm/templates.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crm/dispatch.h"
#include "crm/err.h"
#include "crm/mustache.h"
#include "crm/request.h"

/* Bound on lazily cached entries (templates and partials, found or
 * missing). Preloaded entries come from the operator's disk, not from
 * records, and are not bounded. */
#define CACHE_MAX 1024
#define PARTIALS_DIR "_partials"
#define PARTIAL_SUFFIX ".mustache"
#define NAME_MAX_LEN 128

/* key is "<name>/<locale>/<file>" or "_partials/<name>"; text NULL records a
 * file that does not exist. Entries never change once stored, so a text
 * pointer handed out stays valid while the array around it grows. */
typedef struct tmpl_entry {
    char *key;
    char *text;
} tmpl_entry_t;

struct cmn_templates {
    char *dir;
    char fallback[CMN_TEMPLATES_LOCALE_MAX + 1];
    size_t max_bytes;
    int frozen;               /* preloaded: a miss never reads the disk */
    size_t preloaded;
    pthread_mutex_t lock;     /* guards entries/n/cap, not the texts */
    int lock_ready;
    tmpl_entry_t *entries;
    size_t n, cap;
};

int cmn_templates_valid_name(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > NAME_MAX_LEN || s[0] == '.')
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

/* Message types additionally must not start with '_': that prefix names
 * shared directories such as _partials. */
static int valid_type(const char *s)
{
    return cmn_templates_valid_name(s) && s[0] != '_';
}

/* Reads a whole file into *out (malloc'd, NUL-terminated). Returns 0,
 * CMN_ERR_NOTFOUND when it does not exist (ENOTDIR included: a locale
 * "directory" that is a file has no templates), CMN_ERR_OVERFLOW when larger
 * than max, CMN_ERR_IO otherwise. */
static int read_file(const char *path, size_t max, char **out)
{
    int rc = 0;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    *out = NULL;
    if (f == NULL) {
        rc = (errno == ENOENT || errno == ENOTDIR) ? CMN_ERR_NOTFOUND : CMN_ERR_IO;
        goto cleanup;
    }
    buf = malloc(max + 1);
    if (buf == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    size_t n = fread(buf, 1, max + 1, f);
    if (ferror(f)) {
        rc = CMN_ERR_IO;
        goto cleanup;
    }
    if (n > max) {
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

/* Returns the stored entry for key or NULL. Called with the lock held. */
static const tmpl_entry_t *find_locked(const cmn_templates_t *t, const char *key)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->entries[i].key, key) == 0)
            return &t->entries[i];
    }
    return NULL;
}

/* Stores key -> text (text may be NULL: missing) unless key is already
 * there or the cache is full (bounded only). Called with the lock held.
 * Returns 1 when stored (t owns text now), 0 otherwise. */
static int store_locked(cmn_templates_t *t, const char *key, char *text, int bounded)
{
    if (bounded && t->n >= CACHE_MAX)
        return 0;
    if (t->n == t->cap) {
        size_t cap = t->cap != 0 ? t->cap * 2 : 32;
        tmpl_entry_t *grown = realloc(t->entries, cap * sizeof *grown);
        if (grown == NULL)
            return 0;
        t->entries = grown;
        t->cap = cap;
    }
    char *key_copy = strdup(key);
    if (key_copy == NULL)
        return 0;
    t->entries[t->n].key = key_copy;
    t->entries[t->n].text = text;
    t->n++;
    return 1;
}

/* Finds the text for key, reading path on a miss (lazy mode). */
static int lookup(cmn_templates_t *t, const char *key, const char *path, cmn_templates_lease_t *lease,
                  const char **text)
{
    const tmpl_entry_t *e = NULL;
    char *loaded = NULL;
    int rc = 0;
    *text = NULL;

    pthread_mutex_lock(&t->lock);
    e = find_locked(t, key);
    if (e != NULL)
        *text = e->text;
    pthread_mutex_unlock(&t->lock);
    if (e != NULL || t->frozen)
        return 0;

    /* Read outside the lock so a slow disk does not stall other threads;
     * two threads may read the same file at once, and the second to
     * publish keeps the first's text and drops its own. */
    rc = read_file(path, t->max_bytes, &loaded);
    if (rc == CMN_ERR_NOTFOUND)
        rc = 0; /* remembered as missing */
    if (rc != 0)
        return rc;

    int stored = 0;
    pthread_mutex_lock(&t->lock);
    e = find_locked(t, key);
    if (e != NULL) {
        *text = e->text;
    } else {
        stored = store_locked(t, key, loaded, 1);
        if (stored)
            *text = loaded;
    }
    pthread_mutex_unlock(&t->lock);
    if (e != NULL) {
        free(loaded);
        return 0;
    }
    if (stored || loaded == NULL)
        return 0;
    /* The cache is full: the caller's lease keeps the text alive until its
     * render is over. */
    if (lease == NULL || lease->n == CMN_TEMPLATES_LEASE_MAX) {
        free(loaded);
        return CMN_ERR_NOMEM;
    }
    lease->parked[lease->n++] = loaded;
    *text = loaded;
    return 0;
}

int cmn_templates_get(cmn_templates_t *t, const char *name, const char *locale, const char *file,
                      cmn_templates_lease_t *lease, const char **text)
{
    char key[512], path[4096];
    *text = NULL;
    if (t == NULL || !valid_type(name) || !cmn_templates_valid_name(locale) || !cmn_templates_valid_name(file))
        return CMN_ERR_INVALID;
    int k = snprintf(key, sizeof key, "%s/%s/%s", name, locale, file);
    int p = snprintf(path, sizeof path, "%s/%s/%s/%s", t->dir, name, locale, file);
    if (k < 0 || (size_t)k >= sizeof key || p < 0 || (size_t)p >= sizeof path)
        return CMN_ERR_INVALID;
    return lookup(t, key, path, lease, text);
}

int cmn_templates_find(cmn_templates_t *t, const char *name, const char *locale, const char *file,
                       cmn_templates_lease_t *lease, const char **text,
                       char locale_used[CMN_TEMPLATES_LOCALE_MAX + 1])
{
    char chain[CMN_TEMPLATES_CHAIN_MAX][CMN_TEMPLATES_LOCALE_MAX + 1];
    int rc = 0;
    *text = NULL;
    locale_used[0] = '\0';
    if (t == NULL)
        return CMN_ERR_INVALID;
    size_t n = cmn_templates_locale_chain(locale, t->fallback, chain, CMN_TEMPLATES_CHAIN_MAX);
    for (size_t i = 0; i < n && *text == NULL; i++) {
        memcpy(locale_used, chain[i], CMN_TEMPLATES_LOCALE_MAX + 1);
        rc = cmn_templates_get(t, name, chain[i], file, lease, text);
        if (rc != 0)
            return rc;
    }
    if (*text == NULL)
        memcpy(locale_used, n > 0 ? chain[0] : t->fallback, CMN_TEMPLATES_LOCALE_MAX + 1);
    return 0;
}

const char *cmn_templates_partial(cmn_templates_t *t, const char *name, cmn_templates_lease_t *lease)
{
    char key[256], path[4096];
    const char *text = NULL;
    if (t == NULL || !cmn_templates_valid_name(name))
        return NULL;
    int k = snprintf(key, sizeof key, PARTIALS_DIR "/%s", name);
    int p = snprintf(path, sizeof path, "%s/" PARTIALS_DIR "/%s" PARTIAL_SUFFIX, t->dir, name);
    if (k < 0 || (size_t)k >= sizeof key || p < 0 || (size_t)p >= sizeof path)
        return NULL;
    if (lookup(t, key, path, lease, &text) != 0)
        return NULL;
    return text;
}

size_t cmn_templates_locale_chain(const char *locale, const char *fallback,
                                  char chain[][CMN_TEMPLATES_LOCALE_MAX + 1], size_t max)
{
    size_t n = 0;
    char tag[CMN_TEMPLATES_LOCALE_MAX + 1];
    char fb[CMN_TEMPLATES_LOCALE_MAX + 1];
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

/* The partial loader handed to the renderer. */
typedef struct partial_ctx {
    cmn_templates_t *t;
    cmn_templates_lease_t *lease;
} partial_ctx_t;

static const char *load_partial(void *ctx, const char *name)
{
    partial_ctx_t *pc = ctx;
    return cmn_templates_partial(pc->t, name, pc->lease);
}

int cmn_templates_render(cmn_templates_t *t, const char *tmpl, size_t tmpl_len, json_object *data, int escape_html,
                         cmn_templates_lease_t *lease, cmn_buf_t *out, char *errstr, size_t errlen)
{
    partial_ctx_t pc = {.t = t, .lease = lease};
    cmn_mustache_opts_t opts = {.escape_html = escape_html, .partial = load_partial, .partial_ctx = &pc};
    if (t == NULL || tmpl == NULL || out == NULL) {
        snprintf(errstr, errlen, "invalid argument");
        return CMN_ERR_INVALID;
    }
    return cmn_mustache_render(tmpl, tmpl_len, data, &opts, out, errstr, errlen);
}

void cmn_templates_lease_release(cmn_templates_lease_t *lease)
{
    if (lease == NULL)
        return;
    for (size_t i = 0; i < lease->n; i++)
        free(lease->parked[i]);
    lease->n = 0;
}

/* Reads <dir>/<sub>/<entry> into *text for the preload, with "path: reason"
 * in errstr on failure. A missing file is 0 with *text NULL. */
static int preload_read(const cmn_templates_t *t, const char *path, char **text, char *errstr, size_t errlen)
{
    int rc = read_file(path, t->max_bytes, text);
    if (rc == CMN_ERR_NOTFOUND)
        return 0;
    if (rc == CMN_ERR_OVERFLOW)
        snprintf(errstr, errlen, "%s: larger than %zu KiB", path, t->max_bytes / 1024);
    else if (rc != 0)
        snprintf(errstr, errlen, "%s: %s", path, cmn_strerror(rc));
    return rc;
}

/* Loads every partial. No _partials directory means no partials: {{> x}}
 * renders empty, as the spec says. */
static int preload_partials(cmn_templates_t *t, char *errstr, size_t errlen)
{
    char path[4096];
    int rc = 0;
    size_t slen = strlen(PARTIAL_SUFFIX);
    snprintf(path, sizeof path, "%s/" PARTIALS_DIR, t->dir);
    DIR *d = opendir(path);
    if (d == NULL)
        return 0;
    for (;;) {
        struct dirent *de = readdir(d);
        if (de == NULL)
            break;
        size_t len = strlen(de->d_name);
        if (len <= slen || strcmp(de->d_name + len - slen, PARTIAL_SUFFIX) != 0)
            continue;
        char name[NAME_MAX_LEN + 1];
        if (len - slen > NAME_MAX_LEN)
            continue;
        memcpy(name, de->d_name, len - slen);
        name[len - slen] = '\0';
        /* A name no template can reach by {{> name}} is not loaded. */
        if (!cmn_templates_valid_name(name))
            continue;
        int n = snprintf(path, sizeof path, "%s/" PARTIALS_DIR "/%s", t->dir, de->d_name);
        if (n < 0 || (size_t)n >= sizeof path) {
            snprintf(errstr, errlen, "%s/" PARTIALS_DIR ": path too long", t->dir);
            rc = CMN_ERR_OVERFLOW;
            break;
        }
        char *text = NULL;
        rc = preload_read(t, path, &text, errstr, errlen);
        if (rc != 0)
            break;
        char key[256];
        snprintf(key, sizeof key, PARTIALS_DIR "/%s", name);
        /* The object is not shared yet, so the lock is not needed. */
        if (text != NULL && !store_locked(t, key, text, 0)) {
            free(text);
            rc = CMN_ERR_NOMEM;
            break;
        }
    }
    closedir(d);
    return rc;
}

/* Loads <dir>/<name>/<locale>/<file> for every locale directory of name and
 * test-renders it: a syntax error shows with any data, so it is caught at
 * start, not per message. */
static int preload_type(cmn_templates_t *t, const char *name, const char *file, char *errstr, size_t errlen)
{
    char path[4096];
    char why[256] = "";
    int rc = 0;
    cmn_buf_t scratch = CMN_BUF_INIT;
    json_object *empty = json_object_new_object();
    snprintf(path, sizeof path, "%s/%s", t->dir, name);
    DIR *d = opendir(path);
    if (empty == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    if (d == NULL)
        goto cleanup; /* a plain file or vanished since the scan: nothing to load */
    for (;;) {
        struct dirent *de = readdir(d);
        if (de == NULL)
            break;
        char locale[CMN_TEMPLATES_LOCALE_MAX + 1];
        if (de->d_name[0] == '.' || cmn_locale_normalize(de->d_name, locale, sizeof locale) != 0)
            continue;
        int n = snprintf(path, sizeof path, "%s/%s/%s/%s", t->dir, name, de->d_name, file);
        if (n < 0 || (size_t)n >= sizeof path)
            continue;
        char *text = NULL;
        rc = preload_read(t, path, &text, errstr, errlen);
        if (rc != 0)
            goto cleanup;
        if (text == NULL)
            continue; /* this locale has other channels' templates only */
        char key[512];
        snprintf(key, sizeof key, "%s/%s/%s", name, locale, file);
        const tmpl_entry_t *dup = find_locked(t, key);
        if (dup != NULL) {
            /* Two directories normalising to one locale ("pt-br", "pt-BR"):
             * the first one read serves it. */
            free(text);
            continue;
        }
        if (!store_locked(t, key, text, 0)) {
            free(text);
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
        t->preloaded++;
        cmn_buf_reset(&scratch);
        rc = cmn_templates_render(t, text, strlen(text), empty, 0, NULL, &scratch, why, sizeof why);
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

static int preload(cmn_templates_t *t, const char *file, char *errstr, size_t errlen)
{
    int rc = preload_partials(t, errstr, errlen);
    DIR *d = NULL;
    if (rc != 0)
        goto cleanup;
    /* Every partial is in memory now, so the test renders below (and every
     * later lookup) need no disk access. */
    t->frozen = 1;
    d = opendir(t->dir);
    if (d == NULL) {
        snprintf(errstr, errlen, "%s: cannot be read", t->dir);
        rc = CMN_ERR_IO;
        goto cleanup;
    }
    for (;;) {
        struct dirent *de = readdir(d);
        if (de == NULL)
            break;
        /* "_partials" and hidden entries are not message types. */
        if (!valid_type(de->d_name))
            continue;
        rc = preload_type(t, de->d_name, file, errstr, errlen);
        if (rc != 0)
            goto cleanup;
    }
cleanup:
    if (d != NULL)
        closedir(d);
    if (rc == CMN_ERR_NOMEM)
        snprintf(errstr, errlen, "out of memory");
    return rc;
}

cmn_templates_t *cmn_templates_new(const cmn_templates_opts_t *opts, char *errstr, size_t errlen)
{
    struct stat st;
    int rc = 0;
    cmn_templates_t *t = NULL;
    if (opts == NULL) {
        snprintf(errstr, errlen, "no options");
        return NULL;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    if (opts->fallback_locale == NULL ||
        cmn_locale_normalize(opts->fallback_locale, t->fallback, sizeof t->fallback) != 0) {
        snprintf(errstr, errlen, "fallback locale: must be a BCP 47 language tag like en");
        rc = CMN_ERR_CONFIG;
        goto cleanup;
    }
    if (opts->dir == NULL || stat(opts->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(errstr, errlen, "%s: not a readable directory", opts->dir != NULL ? opts->dir : "(null)");
        rc = CMN_ERR_CONFIG;
        goto cleanup;
    }
    if (opts->preload_file != NULL && !cmn_templates_valid_name(opts->preload_file)) {
        snprintf(errstr, errlen, "template file name is not valid");
        rc = CMN_ERR_CONFIG;
        goto cleanup;
    }
    t->max_bytes = opts->max_bytes != 0 ? opts->max_bytes : CMN_TEMPLATES_DEFAULT_MAX_BYTES;
    t->dir = strdup(opts->dir);
    if (t->dir == NULL || pthread_mutex_init(&t->lock, NULL) != 0) {
        snprintf(errstr, errlen, "out of memory");
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    t->lock_ready = 1;
    if (opts->preload_file != NULL) {
        rc = preload(t, opts->preload_file, errstr, errlen);
    }
cleanup:
    if (rc != 0) {
        cmn_templates_destroy(t);
        t = NULL;
    }
    return t;
}

void cmn_templates_destroy(cmn_templates_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->entries[i].key);
        free(t->entries[i].text);
    }
    free(t->entries);
    free(t->dir);
    if (t->lock_ready)
        pthread_mutex_destroy(&t->lock);
    free(t);
}

const char *cmn_templates_fallback(const cmn_templates_t *t)
{
    return t != NULL ? t->fallback : "";
}

size_t cmn_templates_preloaded(const cmn_templates_t *t)
{
    return t != NULL ? t->preloaded : 0;
}

/* Adds key -> value to obj taking a new reference on value. */
static int data_add_ref(json_object *obj, const char *key, json_object *value)
{
    json_object *ref = json_object_get(value);
    if (json_object_object_add(obj, key, ref) != 0) {
        json_object_put(ref);
        return CMN_ERR_NOMEM;
    }
    return 0;
}

/* Adds key -> a copy of value; NULL adds nothing. */
static int data_add_string(json_object *obj, const char *key, const char *value)
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

json_object *cmn_templates_data_new(json_object *context, const cmn_recipient_t *r, cmn_channel_t address_channel)
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
                        rc = data_add_ref(recipient, rkey, rval);
                }
            } else if (rc == 0) {
                rc = data_add_ref(data, key, val);
            }
        }
    }
    /* The dispatch's recipient is the validated one: it wins over a
     * "recipient" object a producer put into the context. */
    if (rc == 0 && r != NULL) {
        rc = data_add_string(recipient, "name", r->name);
        if (rc == 0 && address_channel == CMN_CHANNEL_EMAIL)
            rc = data_add_string(recipient, "email", r->email);
        if (rc == 0 && address_channel == CMN_CHANNEL_SMS)
            rc = data_add_string(recipient, "phone", r->phone);
        if (rc == 0 && address_channel == CMN_CHANNEL_WHATSAPP)
            rc = data_add_string(recipient, "whatsapp", r->whatsapp);
        if (rc == 0)
            rc = data_add_string(recipient, "locale", r->locale);
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
