/* email_templates.h - finds, caches and renders a message type's email
 * templates.
 *
 * Layout under the templates directory:
 *   <dir>/<message_type>/<locale>/subject.mustache     required
 *   <dir>/<message_type>/<locale>/body.txt.mustache    required
 *   <dir>/<message_type>/<locale>/body.html.mustache   optional (text-only email without it)
 *   <dir>/_partials/<name>.mustache                    shared by {{> name}}
 * A locale counts when its subject.mustache exists; one without
 * body.txt.mustache is a broken set (CMN_ERR_TEMPLATE), not skipped.
 *
 * Locale resolution: the requested tag, then each shorter prefix of it
 * ("zh-Hant-TW", "zh-Hant", "zh"), then the fallback locale. When none has
 * templates the result is CMN_ERR_NOTFOUND, which the worker reports as the
 * permanent failure "no_template".
 *
 * Subject and text are rendered with HTML escaping off, the HTML body with
 * it on, so "&" in a name reads "&" in the subject and "&amp;" in the HTML.
 * The subject template's trailing line break (editors add one) is dropped
 * when it is loaded, so any CR or LF left in a rendered subject came from
 * the data and the MIME builder refuses it.
 *
 * Files are read on first use and kept for the life of the object (found
 * and missing alike, up to a bounded number of entries), so a running worker
 * does not touch the disk per message; deploy new templates by restarting.
 * The cache is guarded by a mutex and its entries never change once stored,
 * so rendering may run on any number of threads. */
#ifndef EMAIL_TEMPLATES_H
#define EMAIL_TEMPLATES_H

#include <json-c/json.h>
#include <stddef.h>

#include "crm/request.h"

/* Longest locale tag handled (matches the request validator's limit). */
#define EMAIL_LOCALE_MAX 64
/* Candidates in a resolution chain: up to 4 prefixes plus the fallback. */
#define EMAIL_LOCALE_CHAIN_MAX 6
/* A template file larger than this is refused (a misconfiguration, not a template). */
#define EMAIL_TEMPLATE_MAX_BYTES (256 * 1024)

typedef struct email_templates email_templates_t;

/* dir and fallback_locale are copied. Fails (NULL, reason in errstr) when
 * dir is not a readable directory or fallback_locale is not a locale. */
email_templates_t *email_templates_new(const char *dir, const char *fallback_locale, char *errstr, size_t errlen);
void email_templates_destroy(email_templates_t *t);

typedef struct email_rendered {
    char *subject;                    /* owned */
    char *text;                       /* owned */
    char *html;                       /* owned; NULL when the locale has no HTML template */
    char locale[EMAIL_LOCALE_MAX + 1];/* the locale whose templates were used */
} email_rendered_t;

/* Renders template set `name` (a message type or an explicit template name)
 * for `locale` (may be NULL: the fallback) with data (borrowed). out must be
 * zeroed; call email_rendered_clear() whatever the result. Returns 0,
 * CMN_ERR_NOTFOUND (no templates for name in any locale of the chain),
 * CMN_ERR_INVALID (name or locale malformed), CMN_ERR_TEMPLATE (a template
 * does not parse), CMN_ERR_IO (a file exists but cannot be read), or
 * CMN_ERR_NOMEM. errstr gets a one-line reason without personal data. */
int email_templates_render(email_templates_t *t, const char *name, const char *locale, json_object *data,
                           email_rendered_t *out, char *errstr, size_t errlen);
void email_rendered_clear(email_rendered_t *r);

/* Writes the resolution chain for locale into chain (at most max entries)
 * and returns how many were written: the normalised tag, its prefixes,
 * then fallback unless already listed. A NULL or malformed locale yields
 * just the fallback. Pure. */
size_t email_templates_locale_chain(const char *locale, const char *fallback,
                                    char chain[][EMAIL_LOCALE_MAX + 1], size_t max);

/* A new json-c object (the caller puts it) holding the dispatch context's
 * members (shared references, context borrowed, may be NULL) plus
 * "recipient": the context's own "recipient" members overlaid with the
 * dispatch recipient's name, email and locale (r borrowed, may be NULL), so
 * templates can say {{recipient.name}}; and, when unsubscribe_url is not
 * NULL (copied), "unsubscribe_url" for a visible unsubscribe link. It
 * replaces any "unsubscribe_url" of the context: the link must be the
 * signed one the worker made, never one a producer supplied. NULL when out
 * of memory. */
json_object *email_templates_data_new(json_object *context, const cmn_recipient_t *r, const char *unsubscribe_url);

#endif
