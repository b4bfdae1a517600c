/* templates.h - finds, caches and renders message templates from the
 * templates directory; the one loader the email, SMS and WhatsApp workers
 * share.
 *
 * Layout under the templates directory:
 *   <dir>/<message_type>/<locale>/<file>      e.g. welcome/fr/sms.txt.mustache
 *   <dir>/_partials/<name>.mustache           shared by {{> name}}
 * The caller names the file, so each channel keeps its own files
 * (subject.mustache, body.txt.mustache, sms.txt.mustache, ...) side by side.
 *
 * Locale resolution: the requested tag, then each shorter prefix of it
 * ("zh-Hant-TW", "zh-Hant", "zh"), then the fallback locale; the first
 * locale that has the file wins. Every channel uses this chain, so a
 * recipient gets every channel in the same language.
 *
 * Names (message types, file names, partial names) become path components,
 * so they must be [A-Za-z0-9_.-]{1,128} and must not start with '.': "..",
 * "/" and hidden files are unreachable. Message types must not start with
 * '_' either, which keeps "_partials" out of reach as a message type.
 *
 * Two loading modes:
 * - lazy (preload_file NULL): a file is read on first use and kept for the
 *   life of the object, found and missing alike, up to a bounded number of
 *   entries (names and locales come from records, so an unbounded cache
 *   could be grown forever by made-up locales; past the bound lookups still
 *   work but read the disk each time).
 * - preloaded (preload_file set): every <dir>/<type>/<locale>/<preload_file>
 *   and every partial is read and test-rendered by cmn_templates_new(), so a
 *   broken deployment stops the worker at start; afterwards the disk is never
 *   touched and anything not loaded is missing. Locale directory names are
 *   normalised ("pt-br" serves "pt-BR").
 * Either way a running worker keeps what it loaded; deploy new templates by
 * restarting.
 *
 * Threading: the cache is guarded by a mutex and its entries never change
 * once stored, so lookups and renders may run on any number of threads. A
 * cmn_templates_lease_t belongs to one render on one thread. */
#ifndef CRM_TEMPLATES_H
#define CRM_TEMPLATES_H

#include <json-c/json.h>
#include <stddef.h>

#include "crm/buf.h"
#include "crm/channel.h"
#include "crm/request.h"

/* Longest locale tag handled (the request validator's limit). */
#define CMN_TEMPLATES_LOCALE_MAX 64
/* Candidates in a resolution chain: up to 5 prefixes plus the fallback. */
#define CMN_TEMPLATES_CHAIN_MAX 6
/* File size limit when the options give none. */
#define CMN_TEMPLATES_DEFAULT_MAX_BYTES (256 * 1024)
/* Texts one lease can hold while the cache is full (see the lease below). */
#define CMN_TEMPLATES_LEASE_MAX 32

typedef struct cmn_templates cmn_templates_t;

typedef struct cmn_templates_opts {
    const char *dir;             /* the templates directory (required) */
    const char *fallback_locale; /* last locale of every chain (required) */
    size_t max_bytes;            /* a larger file is refused (CMN_ERR_OVERFLOW); 0: the default */
    const char *preload_file;    /* NULL: lazy loading; else the file name loaded for every type and locale */
} cmn_templates_opts_t;

/* Texts handed out while the cache is full are not cached, so somebody must
 * free them after the render: the lease. Zero it before use (= {0}) and call
 * cmn_templates_lease_release() when the texts it covers are no longer
 * needed, whatever the result. */
typedef struct cmn_templates_lease {
    char *parked[CMN_TEMPLATES_LEASE_MAX];
    size_t n;
} cmn_templates_lease_t;

/* Everything in opts is copied. NULL with the reason in errstr when dir is
 * not a directory, fallback_locale is not a locale, preload_file is not a
 * valid file name, or (preloading) a template cannot be read or does not
 * parse ("<path>: reason"). The caller destroys the result. */
cmn_templates_t *cmn_templates_new(const cmn_templates_opts_t *opts, char *errstr, size_t errlen);
/* Frees t and every cached text; texts handed out become invalid. NULL is a
 * no-op. */
void cmn_templates_destroy(cmn_templates_t *t);

/* The normalised fallback locale, owned by t. */
const char *cmn_templates_fallback(const cmn_templates_t *t);
/* Number of templates (not partials) loaded by the preload; 0 when lazy. */
size_t cmn_templates_preloaded(const cmn_templates_t *t);

/* 1 when s is usable as a path component: [A-Za-z0-9_.-]{1,128}, not
 * starting with '.'. Pure. */
int cmn_templates_valid_name(const char *s);

/* Writes the resolution chain for locale into chain (at most max entries)
 * and returns how many were written: the normalised tag, its prefixes, then
 * fallback (normalised) unless already listed; one slot is kept for the
 * fallback. A NULL or malformed locale yields just the fallback. Pure. */
size_t cmn_templates_locale_chain(const char *locale, const char *fallback,
                                  char chain[][CMN_TEMPLATES_LOCALE_MAX + 1], size_t max);

/* Looks up <dir>/<name>/<locale>/<file> (locale used as given, no chain).
 * *text is the template text, or NULL when the file does not exist; it is
 * owned by t (or by lease when the cache is full) and stays valid until
 * cmn_templates_destroy() or cmn_templates_lease_release(). Returns 0,
 * CMN_ERR_INVALID (a malformed name or a path too long), CMN_ERR_OVERFLOW
 * (the file is over the size limit), CMN_ERR_IO (it exists but cannot be
 * read) or CMN_ERR_NOMEM. */
int cmn_templates_get(cmn_templates_t *t, const char *name, const char *locale, const char *file,
                      cmn_templates_lease_t *lease, const char **text);

/* Walks the resolution chain of locale and returns the first existing
 * <dir>/<name>/<chain[i]>/<file> in *text (ownership as for
 * cmn_templates_get), with that locale in locale_used. When no locale has
 * the file, returns 0 with *text NULL and locale_used set to the first
 * locale of the chain (the one to name in a message). On an error
 * (codes as for cmn_templates_get) locale_used names the locale that
 * failed. */
int cmn_templates_find(cmn_templates_t *t, const char *name, const char *locale, const char *file,
                       cmn_templates_lease_t *lease, const char **text,
                       char locale_used[CMN_TEMPLATES_LOCALE_MAX + 1]);

/* The text of partial `name` (<dir>/_partials/<name>.mustache), or NULL when
 * there is none, the name is malformed or it cannot be read: a partial that
 * cannot be found renders as empty (spec behaviour). Ownership as for
 * cmn_templates_get. */
const char *cmn_templates_partial(cmn_templates_t *t, const char *name, cmn_templates_lease_t *lease);

/* Renders tmpl (tmpl_len bytes, borrowed) with data (borrowed) and partials
 * from t, appending to out; escape_html as in cmn_mustache_opts_t (1 for
 * HTML bodies, 0 for subjects and plain text). Partial texts loaded while
 * the cache is full are parked in lease. Returns 0 or the error of
 * cmn_mustache_render() with "line N: reason" in errstr; on error nothing is
 * appended. */
int cmn_templates_render(cmn_templates_t *t, const char *tmpl, size_t tmpl_len, json_object *data, int escape_html,
                         cmn_templates_lease_t *lease, cmn_buf_t *out, char *errstr, size_t errlen);

/* Frees the texts parked in lease and empties it. NULL is a no-op. */
void cmn_templates_lease_release(cmn_templates_lease_t *lease);

/* The data a message template renders with: the dispatch context's members
 * (borrowed by reference) plus a "recipient" object that merges
 * context.recipient with the validated recipient's name, locale and, unless
 * address_channel is CMN_CHANNEL_NONE, its address for that channel (the
 * validated values win). context and r may be NULL. Returns a new object the
 * caller puts, or NULL when out of memory. */
json_object *cmn_templates_data_new(json_object *context, const cmn_recipient_t *r, cmn_channel_t address_channel);

#endif
