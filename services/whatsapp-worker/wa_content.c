/* wa_content.c - parsing and checking context.whatsapp. See wa_content.h. */
#include "wa_content.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "crm/err.h"
#include "crm/json.h"

const char *wa_content_kind_name(wa_content_kind_t k)
{
    switch (k) {
    case WA_CONTENT_TEXT:
        return "text";
    case WA_CONTENT_IMAGE:
        return "image";
    case WA_CONTENT_DOCUMENT:
        return "document";
    case WA_CONTENT_BUTTONS:
        return "buttons";
    case WA_CONTENT_LIST:
        return "list";
    case WA_CONTENT_TEMPLATE:
        return "template";
    }
    return "text";
}

size_t wa_utf8_chars(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; p != NULL && *p != '\0'; p++) {
        /* Continuation bytes (10xxxxxx) belong to the character before. */
        if ((*p & 0xC0) != 0x80)
            n++;
    }
    return n;
}

int wa_valid_http_url(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    size_t scheme;
    if (n == 0 || n > WA_URL_MAX)
        return 0;
    if (strncasecmp(s, "https://", 8) == 0)
        scheme = 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        scheme = 7;
    else
        return 0;
    if (n == scheme || s[scheme] == '/')
        return 0; /* no host */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7F)
            return 0;
    }
    return 1;
}

/* Parsing state: where problems are reported. */
typedef struct parser {
    char *errstr;
    size_t errlen;
} parser_t;

static int fail(parser_t *p, const char *field, const char *reason)
{
    snprintf(p->errstr, p->errlen, "context." WA_CONTEXT_MEMBER "%s%s: %s", field[0] != '\0' ? "." : "", field,
             reason);
    return CMN_ERR_INVALID;
}

/* Reads an optional string member: 0 with *out set (NULL when absent), or an
 * error when present with another type, empty, or longer than max_chars
 * (0: no limit). */
static int opt_string(parser_t *p, json_object *obj, const char *key, const char *field, size_t max_chars,
                      const char **out)
{
    char why[64];
    *out = NULL;
    if (!cmn_json_has(obj, key))
        return 0;
    const char *s = cmn_json_get_string(obj, key);
    if (s == NULL)
        return fail(p, field, "must be a string");
    if (s[0] == '\0')
        return fail(p, field, "must not be empty");
    if (max_chars > 0 && wa_utf8_chars(s) > max_chars) {
        snprintf(why, sizeof why, "must be at most %zu characters", max_chars);
        return fail(p, field, why);
    }
    *out = s;
    return 0;
}

static int req_string(parser_t *p, json_object *obj, const char *key, const char *field, size_t max_chars,
                      const char **out)
{
    int rc = opt_string(p, obj, key, field, max_chars, out);
    if (rc == 0 && *out == NULL)
        return fail(p, field, "is required");
    return rc;
}

static int parse_buttons(parser_t *p, json_object *inter, wa_content_t *out)
{
    char field[96];
    json_object *arr = cmn_json_get_array(inter, "buttons");
    size_t n = arr != NULL ? json_object_array_length(arr) : 0;
    if (arr == NULL || n == 0 || n > WA_BUTTONS_MAX)
        return fail(p, "interactive.buttons", "must be an array of 1 to 3 buttons");
    for (size_t i = 0; i < n; i++) {
        json_object *b = json_object_array_get_idx(arr, i);
        wa_button_t *btn = &out->buttons[i];
        if (!json_object_is_type(b, json_type_object)) {
            snprintf(field, sizeof field, "interactive.buttons[%zu]", i);
            return fail(p, field, "must be an object {id, title}");
        }
        snprintf(field, sizeof field, "interactive.buttons[%zu].id", i);
        int rc = req_string(p, b, "id", field, 0, &btn->id);
        if (rc == 0 && strlen(btn->id) > WA_BUTTON_ID_MAX)
            rc = fail(p, field, "must be at most 256 bytes");
        if (rc != 0)
            return rc;
        snprintf(field, sizeof field, "interactive.buttons[%zu].title", i);
        rc = req_string(p, b, "title", field, WA_BUTTON_TITLE_MAX, &btn->title);
        if (rc != 0)
            return rc;
        /* WhatsApp refuses duplicates: the reply would be ambiguous. */
        for (size_t k = 0; k < i; k++) {
            if (strcmp(out->buttons[k].id, btn->id) == 0 || strcmp(out->buttons[k].title, btn->title) == 0) {
                snprintf(field, sizeof field, "interactive.buttons[%zu]", i);
                return fail(p, field, "id and title must be unique");
            }
        }
    }
    out->n_buttons = n;
    return 0;
}

static int parse_list(parser_t *p, json_object *inter, wa_content_t *out)
{
    char field[96];
    int rc = req_string(p, inter, "button", "interactive.button", WA_LIST_BUTTON_MAX, &out->list_button);
    if (rc != 0)
        return rc;
    json_object *secs = cmn_json_get_array(inter, "sections");
    size_t ns = secs != NULL ? json_object_array_length(secs) : 0;
    if (secs == NULL || ns == 0 || ns > WA_SECTIONS_MAX)
        return fail(p, "interactive.sections", "must be an array of 1 to 10 sections");
    for (size_t s = 0; s < ns; s++) {
        json_object *sec = json_object_array_get_idx(secs, s);
        wa_section_t *section = &out->sections[s];
        if (!json_object_is_type(sec, json_type_object)) {
            snprintf(field, sizeof field, "interactive.sections[%zu]", s);
            return fail(p, field, "must be an object {title, rows}");
        }
        /* Meta requires a title once there are several sections; always
         * asking for one keeps lists readable and the rule simple. */
        snprintf(field, sizeof field, "interactive.sections[%zu].title", s);
        rc = req_string(p, sec, "title", field, WA_SECTION_TITLE_MAX, &section->title);
        if (rc != 0)
            return rc;
        json_object *rows = cmn_json_get_array(sec, "rows");
        size_t nr = rows != NULL ? json_object_array_length(rows) : 0;
        snprintf(field, sizeof field, "interactive.sections[%zu].rows", s);
        if (rows == NULL || nr == 0)
            return fail(p, field, "must be a non-empty array of rows");
        if (out->n_rows + nr > WA_ROWS_MAX)
            return fail(p, "interactive.sections", "must hold at most 10 rows in all");
        section->first_row = out->n_rows;
        section->n_rows = nr;
        for (size_t r = 0; r < nr; r++) {
            json_object *row = json_object_array_get_idx(rows, r);
            wa_row_t *wr = &out->rows[out->n_rows];
            if (!json_object_is_type(row, json_type_object)) {
                snprintf(field, sizeof field, "interactive.sections[%zu].rows[%zu]", s, r);
                return fail(p, field, "must be an object {id, title, description}");
            }
            snprintf(field, sizeof field, "interactive.sections[%zu].rows[%zu].id", s, r);
            rc = req_string(p, row, "id", field, 0, &wr->id);
            if (rc == 0 && strlen(wr->id) > WA_ROW_ID_MAX)
                rc = fail(p, field, "must be at most 200 bytes");
            if (rc != 0)
                return rc;
            snprintf(field, sizeof field, "interactive.sections[%zu].rows[%zu].title", s, r);
            rc = req_string(p, row, "title", field, WA_ROW_TITLE_MAX, &wr->title);
            if (rc != 0)
                return rc;
            snprintf(field, sizeof field, "interactive.sections[%zu].rows[%zu].description", s, r);
            rc = opt_string(p, row, "description", field, WA_ROW_DESCRIPTION_MAX, &wr->description);
            if (rc != 0)
                return rc;
            for (size_t k = 0; k < out->n_rows; k++) {
                if (strcmp(out->rows[k].id, wr->id) == 0) {
                    snprintf(field, sizeof field, "interactive.sections[%zu].rows[%zu].id", s, r);
                    return fail(p, field, "must be unique in the list");
                }
            }
            out->n_rows++;
        }
    }
    out->n_sections = ns;
    return 0;
}

static int parse_interactive(parser_t *p, json_object *wa, wa_content_t *out)
{
    json_object *inter = cmn_json_get_object(wa, "interactive");
    if (inter == NULL)
        return fail(p, "interactive", "must be an object");
    const char *type = cmn_json_get_string(inter, "type");
    int rc;
    if (type != NULL && strcmp(type, "button") == 0)
        out->kind = WA_CONTENT_BUTTONS;
    else if (type != NULL && strcmp(type, "list") == 0)
        out->kind = WA_CONTENT_LIST;
    else
        return fail(p, "interactive.type", "must be button or list");
    rc = opt_string(p, inter, "header", "interactive.header", WA_HEADER_MAX_CHARS, &out->header);
    if (rc == 0)
        rc = opt_string(p, inter, "footer", "interactive.footer", WA_HEADER_MAX_CHARS, &out->footer);
    if (rc != 0)
        return rc;
    return out->kind == WA_CONTENT_BUTTONS ? parse_buttons(p, inter, out) : parse_list(p, inter, out);
}

static int parse_media(parser_t *p, json_object *wa, wa_content_t *out)
{
    int rc = req_string(p, wa, "link", "link", 0, &out->link);
    if (rc != 0)
        return rc;
    if (!wa_valid_http_url(out->link))
        return fail(p, "link", "must be an http(s) URL without spaces, at most 2048 bytes");
    return opt_string(p, wa, "caption", "caption", WA_CAPTION_MAX_CHARS, &out->caption);
}

int wa_content_parse(json_object *context, wa_content_t *out, char *errstr, size_t errlen)
{
    parser_t p = {errstr, errlen};
    memset(out, 0, sizeof *out);
    out->kind = WA_CONTENT_TEXT;
    if (errlen > 0)
        errstr[0] = '\0';
    if (!cmn_json_has(context, WA_CONTEXT_MEMBER))
        return 0;
    json_object *wa = cmn_json_get_object(context, WA_CONTEXT_MEMBER);
    if (wa == NULL)
        return fail(&p, "", "must be an object");
    const char *type = "text";
    if (cmn_json_has(wa, "type")) {
        type = cmn_json_get_string(wa, "type");
        if (type == NULL)
            return fail(&p, "type", "must be a string");
    }
    if (strcmp(type, "text") == 0) {
        out->kind = WA_CONTENT_TEXT;
        if (cmn_json_has(wa, "preview_url")) {
            json_object *v = json_object_object_get(wa, "preview_url");
            if (!json_object_is_type(v, json_type_boolean))
                return fail(&p, "preview_url", "must be true or false");
            out->preview_url = json_object_get_boolean(v) ? 1 : 0;
        }
        return 0;
    }
    if (strcmp(type, "image") == 0 || strcmp(type, "document") == 0) {
        out->kind = type[0] == 'i' ? WA_CONTENT_IMAGE : WA_CONTENT_DOCUMENT;
        return parse_media(&p, wa, out);
    }
    if (strcmp(type, "interactive") == 0)
        return parse_interactive(&p, wa, out);
    if (strcmp(type, "template") == 0) {
        out->kind = WA_CONTENT_TEMPLATE;
        return 0;
    }
    return fail(&p, "type", "must be text, image, document, interactive or template");
}
