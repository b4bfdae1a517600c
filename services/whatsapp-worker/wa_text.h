/* wa_text.h - the free-text WhatsApp templates:
 * <dir>/<message_type>/<locale>/whatsapp.txt.mustache, with partials from
 * <dir>/_partials/<name>.mustache (the layout the email and SMS templates
 * share).
 *
 * Every template is read and test-rendered when the worker starts, so a
 * missing directory or a template that does not parse stops the worker with
 * one clear line instead of failing messages one by one in production; after
 * that the object is immutable and no disk access happens per message
 * (deploy new templates by restarting).
 *
 * Locale resolution is the other channels': the requested tag, its shorter
 * prefixes, then the fallback locale. Rendering is plain text (escape_html 0):
 * WhatsApp shows characters as they are. Trailing blanks and line breaks of
 * the result are dropped (editors end files with a line break). */
#ifndef WA_TEXT_H
#define WA_TEXT_H

#include <json-c/json.h>
#include <stddef.h>

#include "crm/buf.h"
#include "crm/request.h"

#define WA_TEXT_FILE "whatsapp.txt.mustache"
#define WA_TEXT_MAX_BYTES (64 * 1024)

typedef struct wa_text wa_text_t;

/* Loads every <dir>/<type>/<locale>/<file> and every partial. dir, file and
 * fallback_locale are borrowed for the call. NULL with "path: reason" in
 * errstr when dir cannot be read, a template cannot be read or does not
 * parse, or fallback_locale is not a locale. */
wa_text_t *wa_text_new(const char *dir, const char *file, const char *fallback_locale, char *errstr,
                       size_t errlen);
/* NULL is a no-op. */
void wa_text_destroy(wa_text_t *t);

/* Number of templates loaded (for the start-up log line). */
size_t wa_text_count(const wa_text_t *t);

/* 1 when template `name` exists for locale (NULL: the fallback) or a locale
 * of its chain. */
int wa_text_has(const wa_text_t *t, const char *name, const char *locale);

/* Renders template `name` for locale with data (borrowed) into out (reset
 * first). Returns 0, CMN_ERR_NOTFOUND (no file in the chain),
 * CMN_ERR_TEMPLATE (render error: cannot happen for a template that loaded,
 * but the data may nest too deeply) or CMN_ERR_NOMEM; errstr gets a one-line
 * reason without personal data. */
int wa_text_render(const wa_text_t *t, const char *name, const char *locale, json_object *data, cmn_buf_t *out,
                   char *errstr, size_t errlen);

/* A new json-c object (the caller puts it) with the dispatch context's
 * members (shared references; context borrowed, may be NULL) and
 * "recipient": the context's own "recipient" members overlaid with the
 * dispatch recipient's name and locale (r borrowed, may be NULL). Addresses
 * are left out: a WhatsApp text never needs to show the number it goes to.
 * NULL when out of memory. */
json_object *wa_text_data_new(json_object *context, const cmn_recipient_t *r);

#endif
