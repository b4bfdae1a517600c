/* wa_content.h - what a WhatsApp dispatch asks to send, from its context.
 *
 * The Dispatch envelope is channel-neutral; WhatsApp-only choices travel in
 * the context member "whatsapp" (absent: a plain text message):
 *
 *   "whatsapp": {"type": "text", "preview_url": true}
 *   "whatsapp": {"type": "image", "link": "https://.../map.png", "caption": "optional"}
 *   "whatsapp": {"type": "document", "link": "https://.../receipt.pdf", "caption": "optional"}
 *   "whatsapp": {"type": "interactive", "interactive": {
 *                  "type": "button", "header": "optional", "footer": "optional",
 *                  "buttons": [{"id": "confirm", "title": "Confirm"}, ...]}}       1-3 buttons
 *   "whatsapp": {"type": "interactive", "interactive": {
 *                  "type": "list", "header": "optional", "footer": "optional",
 *                  "button": "Choose a slot",
 *                  "sections": [{"title": "Monday", "rows": [
 *                      {"id": "mon-9", "title": "9:00", "description": "optional"}]}]}} 1-10 rows in all
 *   "whatsapp": {"type": "template"}   the approved template even inside the window
 *
 * The text of the message - the body of a text or interactive message, the
 * caption of media without an explicit one - is always the rendered
 * templates/<message_type>/<locale>/whatsapp.txt.mustache, so wording stays
 * in the template files and in the recipient's language. Free-form content
 * is only possible inside the 24-hour window; outside it the approved
 * template replaces the whole message (wa_window.h).
 *
 * Limits are Meta's (Cloud API reference, and the spec's schemas in
 * shared/oracles/meta): checked here so a message Meta would refuse fails
 * at once, permanently, naming the field. Lengths are counted in characters
 * (UTF-8 code points), as Meta counts them.
 *
 * Everything here is pure. */
#ifndef WA_CONTENT_H
#define WA_CONTENT_H

#include <json-c/json.h>
#include <stddef.h>

#define WA_CONTEXT_MEMBER "whatsapp"

#define WA_TEXT_MAX_CHARS 4096        /* text.body */
#define WA_CAPTION_MAX_CHARS 1024     /* image/document caption */
#define WA_INTERACTIVE_BODY_MAX 1024  /* interactive.body.text */
#define WA_HEADER_MAX_CHARS 60        /* interactive header text, footer text */
#define WA_BUTTONS_MAX 3
#define WA_BUTTON_TITLE_MAX 20
#define WA_BUTTON_ID_MAX 256
#define WA_LIST_BUTTON_MAX 20
#define WA_SECTIONS_MAX 10
#define WA_ROWS_MAX 10                /* across all sections */
#define WA_ROW_TITLE_MAX 24
#define WA_ROW_ID_MAX 200
#define WA_ROW_DESCRIPTION_MAX 72
#define WA_SECTION_TITLE_MAX 24
#define WA_URL_MAX 2048

typedef enum wa_content_kind {
    WA_CONTENT_TEXT = 0,
    WA_CONTENT_IMAGE,
    WA_CONTENT_DOCUMENT,
    WA_CONTENT_BUTTONS,  /* interactive reply buttons */
    WA_CONTENT_LIST,     /* interactive list */
    WA_CONTENT_TEMPLATE  /* the approved template, whatever the window */
} wa_content_kind_t;

/* "text", "image", "document", "buttons", "list", "template". */
const char *wa_content_kind_name(wa_content_kind_t k);

typedef struct wa_button {
    const char *id, *title;
} wa_button_t;

typedef struct wa_row {
    const char *id, *title, *description; /* description may be NULL */
} wa_row_t;

typedef struct wa_section {
    const char *title;
    size_t first_row, n_rows; /* a slice of wa_content_t.rows */
} wa_section_t;

/* Every string is borrowed from the context object it was parsed from and
 * is valid as long as that object is; NULL means absent. */
typedef struct wa_content {
    wa_content_kind_t kind;
    int preview_url;          /* text: let WhatsApp render a link preview */
    const char *link;         /* image, document: http(s) URL of the media */
    const char *caption;      /* image, document: explicit caption (else the rendered text) */
    const char *header;       /* buttons, list: header text */
    const char *footer;       /* buttons, list: footer text */
    const char *list_button;  /* list: the label of the button that opens it */
    wa_button_t buttons[WA_BUTTONS_MAX];
    size_t n_buttons;
    wa_section_t sections[WA_SECTIONS_MAX];
    size_t n_sections;
    wa_row_t rows[WA_ROWS_MAX];
    size_t n_rows;
} wa_content_t;

/* Reads context.whatsapp (context borrowed, may be NULL) into out (zeroed
 * first). Returns 0, or CMN_ERR_INVALID with "context.whatsapp.<field>:
 * reason" in errstr (no values quoted, they may be personal data). */
int wa_content_parse(json_object *context, wa_content_t *out, char *errstr, size_t errlen);

/* The number of characters (UTF-8 code points) of s; invalid bytes count one
 * each. */
size_t wa_utf8_chars(const char *s);

/* 1 when s is an absolute http:// or https:// URL of at most WA_URL_MAX bytes
 * without spaces or control characters. */
int wa_valid_http_url(const char *s);

#endif
