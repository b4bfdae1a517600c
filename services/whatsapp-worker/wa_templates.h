/* wa_templates.h - the approved WhatsApp templates, mapped from message
 * types (config/whatsapp_templates.json), and their parameters filled from
 * a dispatch's context.
 *
 * Outside the 24-hour window WhatsApp only delivers templates that Meta has
 * approved beforehand; the worker sends them by name (Meta) or by Content
 * SID (Twilio), with the variable parts as parameters. The file says, per
 * message type (or explicit template name), which template that is and
 * where each parameter comes from:
 *
 *   {"fallback_locale": "en",
 *    "message_types": {
 *      "appointment_reminder": {
 *        "meta": {"name": "appointment_reminder",
 *                 "languages": {"en": "en_US", "fr": "fr"},
 *                 "header": {"type": "text", "param": "company.name"},       optional; type text|image
 *                 "body": ["appointment.date", {"param": "appointment.time", "default": "-"}],
 *                 "buttons": [{"sub_type": "quick_reply", "index": 0, "payload": "confirm"},
 *                             {"sub_type": "url", "index": 1, "param": "appointment.token"}]},
 *        "twilio": {"content_sids": {"en": "HX...32 hex", "fr": "HX..."},
 *                   "variables": {"1": "appointment.date", "2": "appointment.time"}}}}}
 *
 * A "param" is a dotted path into the template data (the context plus
 * recipient.name and recipient.locale). A parameter is a string or a number;
 * missing, empty, or another type is a permanent failure naming the
 * parameter (never its value) unless the parameter has a "default".
 * Meta refuses template parameters holding line breaks, tabs or more than
 * four spaces in a row (the same holds for Twilio's Content variables), so
 * those are refused here too.
 *
 * Languages: the recipient's locale, then its shorter prefixes, then
 * fallback_locale, are looked up in "languages" (Meta: the template's
 * language code) or "content_sids" (Twilio: one Content SID per language).
 *
 * The object is immutable once loaded, so sharing it is safe. */
#ifndef WA_TEMPLATES_H
#define WA_TEMPLATES_H

#include <json-c/json.h>
#include <stddef.h>

#define WA_TPL_PARAMS_MAX 20    /* body parameters, Twilio variables */
#define WA_TPL_BUTTONS_MAX 10   /* Meta allows up to 10 buttons on a template */
#define WA_TPL_LOCALE_MAX 64
#define WA_TPL_HEADER_TEXT_MAX 60

typedef struct wa_templates wa_templates_t;

/* Reads and checks the file at path. NULL with "path: reason" in errstr
 * (naming the offending member) when it cannot be read or is invalid. */
wa_templates_t *wa_templates_load(const char *path, char *errstr, size_t errlen);

/* The same from a parsed document (borrowed; everything needed is copied). */
wa_templates_t *wa_templates_from_json(json_object *root, char *errstr, size_t errlen);

/* NULL is a no-op. */
void wa_templates_destroy(wa_templates_t *t);

typedef enum wa_tpl_provider { WA_TPL_META = 0, WA_TPL_TWILIO = 1 } wa_tpl_provider_t;

/* 1 when name (a message type or template name) maps to a template for the
 * provider. */
int wa_templates_has(const wa_templates_t *t, const char *name, wa_tpl_provider_t provider);

typedef enum wa_tpl_header_kind { WA_TPL_HEADER_NONE = 0, WA_TPL_HEADER_TEXT, WA_TPL_HEADER_IMAGE } wa_tpl_header_kind_t;
typedef enum wa_tpl_button_kind { WA_TPL_BUTTON_QUICK_REPLY = 0, WA_TPL_BUTTON_URL } wa_tpl_button_kind_t;

/* A Meta template call with its parameters filled. name and language are
 * borrowed from the templates object; every value is owned (free with
 * wa_tpl_call_clear). */
typedef struct wa_tpl_call {
    const char *name;
    const char *language;
    wa_tpl_header_kind_t header_kind;
    char *header_value;          /* text, or the image URL */
    char *body[WA_TPL_PARAMS_MAX];
    size_t n_body;
    struct {
        wa_tpl_button_kind_t kind;
        int index;
        char *value;             /* quick_reply: the payload; url: the URL suffix */
    } buttons[WA_TPL_BUTTONS_MAX];
    size_t n_buttons;
} wa_tpl_call_t;

/* A Twilio Content template call. content_sid is borrowed from the
 * templates object; variables_json (owned) is the ContentVariables text,
 * e.g. {"1":"24/11","2":"14:30"}. */
typedef struct wa_tpl_twilio_call {
    const char *content_sid;
    char *variables_json;
} wa_tpl_twilio_call_t;

/* Fills out (zeroed first) for template `name` in locale (may be NULL) with
 * data (borrowed). Returns 0; CMN_ERR_NOTFOUND when name has no Meta
 * template or none for any locale of the chain; CMN_ERR_INVALID with the
 * parameter named in errstr when a parameter is missing or malformed;
 * CMN_ERR_NOMEM. Call wa_tpl_call_clear whatever the result. */
int wa_templates_meta_call(const wa_templates_t *t, const char *name, const char *locale, json_object *data,
                           wa_tpl_call_t *out, char *errstr, size_t errlen);
void wa_tpl_call_clear(wa_tpl_call_t *c);

/* The same for Twilio. Call wa_tpl_twilio_call_clear whatever the result. */
int wa_templates_twilio_call(const wa_templates_t *t, const char *name, const char *locale, json_object *data,
                             wa_tpl_twilio_call_t *out, char *errstr, size_t errlen);
void wa_tpl_twilio_call_clear(wa_tpl_twilio_call_t *c);

/* Writes the lookup chain of locale (normalised tag, its prefixes, then
 * fallback unless listed) into chain and returns the count. A NULL or
 * malformed locale yields just the fallback. Pure. */
size_t wa_locale_chain(const char *locale, const char *fallback, char chain[][WA_TPL_LOCALE_MAX + 1], size_t max);

/* Resolves a dotted path ("appointment.date") in data. Returns the value
 * (borrowed) or NULL when some step is missing or not an object. */
json_object *wa_data_path(json_object *data, const char *path);

#endif
