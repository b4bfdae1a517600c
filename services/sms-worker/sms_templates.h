/* sms_templates.h - finds, caches and renders one-file message templates
 * (the SMS body today; the same loader fits any channel whose message is a
 * single text, such as WhatsApp free text).
 *
 * Layout under the templates directory (shared with the email templates):
 *   <dir>/<message_type>/<locale>/<file>      e.g. welcome/fr/sms.txt.mustache
 *   <dir>/_partials/<name>.mustache           shared by {{> name}}
 *
 * Locale resolution: the requested tag, then each shorter prefix of it
 * ("zh-Hant-TW", "zh-Hant", "zh"), then the fallback locale; the first
 * locale that has the file wins. None: CMN_ERR_NOTFOUND, which the worker
 * reports as the permanent failure "no_template". This is the rule the email
 * templates follow, so a recipient gets every channel in the same language.
 *
 * Rendering is plain text (no HTML escaping). The file's trailing line
 * breaks and blanks (editors add one) are dropped from the result, because
 * every character of an SMS is paid for.
 *
 * Files are read on first use and kept for the life of the object (found
 * and missing alike, up to a bounded number of entries), so a running worker
 * does not touch the disk per message; deploy new templates by restarting.
 *
 * Loading, the locale chain and the cache are the shared loader's
 * (crm/templates.h), whose cache is mutex-guarded; the worker core still
 * calls prepare on its one thread. */
#ifndef SMS_TEMPLATES_H
#define SMS_TEMPLATES_H

#include <json-c/json.h>
#include <stddef.h>

#include "crm/buf.h"
#include "crm/request.h"

/* Longest locale tag handled (the request validator's limit). */
#define SMS_LOCALE_MAX 64
/* Candidates in a resolution chain: up to 4 prefixes plus the fallback. */
#define SMS_LOCALE_CHAIN_MAX 6
/* A template file larger than this is refused (a misconfiguration). */
#define SMS_TEMPLATE_MAX_BYTES (64 * 1024)

typedef struct sms_templates sms_templates_t;

/* dir, file (the file name inside each locale directory, e.g.
 * "sms.txt.mustache") and fallback_locale are copied. NULL with the reason
 * in errstr when dir is not a directory, file is not a plain file name or
 * fallback_locale is not a locale. */
sms_templates_t *sms_templates_new(const char *dir, const char *file, const char *fallback_locale, char *errstr,
                                   size_t errlen);
/* NULL is a no-op. */
void sms_templates_destroy(sms_templates_t *t);

/* Renders template `name` (a message type or an explicit template name) for
 * locale (NULL: the fallback) with data (borrowed) into out (reset first).
 * locale_used receives the locale whose file was used. Returns 0,
 * CMN_ERR_NOTFOUND (no file in any locale of the chain), CMN_ERR_INVALID
 * (name malformed), CMN_ERR_TEMPLATE (the file does not parse or is too
 * large), CMN_ERR_IO (it exists but cannot be read) or CMN_ERR_NOMEM; errstr
 * gets a one-line reason without personal data. */
int sms_templates_render(sms_templates_t *t, const char *name, const char *locale, json_object *data,
                         cmn_buf_t *out, char locale_used[SMS_LOCALE_MAX + 1], char *errstr, size_t errlen);

/* Writes the resolution chain for locale into chain (at most max entries)
 * and returns how many were written: the normalised tag, its prefixes, then
 * fallback unless already listed. A NULL or malformed locale yields just the
 * fallback. Pure. */
size_t sms_templates_locale_chain(const char *locale, const char *fallback, char chain[][SMS_LOCALE_MAX + 1],
                                  size_t max);

/* A new json-c object (the caller puts it) holding the dispatch context's
 * members (shared references; context borrowed, may be NULL) plus
 * "recipient": the context's own "recipient" members overlaid with the
 * dispatch recipient's name, phone and locale (r borrowed, may be NULL), so
 * templates can say {{recipient.name}}. NULL when out of memory. */
json_object *sms_templates_data_new(json_object *context, const cmn_recipient_t *r);

#endif
