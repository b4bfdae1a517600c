/* wa_meta.c - Cloud API request bodies and response parsing. See wa_meta.h. */
#include "wa_meta.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "crm/err.h"
#include "crm/json.h"

/* ------------------------------------------------------------ building */

/* json_object_object_add and json_object_array_add leave the value with
 * the caller when they fail (json-c >= 0.13), so these helpers put it: the
 * caller hands every value over exactly once, success or not, and a NULL
 * value (a failed constructor) is reported as out of memory. */
static int add(json_object *obj, const char *key, json_object *val)
{
    if (val == NULL)
        return CMN_ERR_NOMEM;
    if (json_object_object_add(obj, key, val) != 0) {
        json_object_put(val);
        return CMN_ERR_NOMEM;
    }
    return 0;
}

static int push(json_object *arr, json_object *val)
{
    if (val == NULL)
        return CMN_ERR_NOMEM;
    if (json_object_array_add(arr, val) != 0) {
        json_object_put(val);
        return CMN_ERR_NOMEM;
    }
    return 0;
}

static int add_str(json_object *obj, const char *key, const char *s)
{
    return add(obj, key, json_object_new_string(s));
}

/* {"type": type, type: {member: value}}-style parameter objects. */
static json_object *text_param(const char *text)
{
    json_object *p = json_object_new_object();
    if (p == NULL || add_str(p, "type", "text") != 0 || add_str(p, "text", text) != 0) {
        json_object_put(p);
        return NULL;
    }
    return p;
}

/* {"type": kind, kind: {"link": link}}: an image header parameter. */
static json_object *media_param(const char *kind, const char *link)
{
    json_object *p = json_object_new_object();
    json_object *m = json_object_new_object();
    int rc = (p != NULL && m != NULL) ? add_str(m, "link", link) : CMN_ERR_NOMEM;
    if (rc == 0)
        rc = add_str(p, "type", kind);
    if (rc == 0) {
        rc = add(p, kind, m);
        m = NULL;
    }
    json_object_put(m);
    if (rc != 0) {
        json_object_put(p);
        return NULL;
    }
    return p;
}

/* [p]; p is taken (put on failure). */
static json_object *one_param(json_object *p)
{
    json_object *a = json_object_new_array();
    if (a == NULL || p == NULL) {
        json_object_put(p);
        json_object_put(a);
        return NULL;
    }
    if (push(a, p) != 0) {
        json_object_put(a);
        return NULL;
    }
    return a;
}

/* {"type", "sub_type"?, "index"?, "parameters": params}; params is taken
 * (put on failure). */
static json_object *make_component(const char *type, const char *sub_type, const char *index, json_object *params)
{
    json_object *c = json_object_new_object();
    int rc = (c != NULL && params != NULL) ? add_str(c, "type", type) : CMN_ERR_NOMEM;
    if (rc == 0 && sub_type != NULL)
        rc = add_str(c, "sub_type", sub_type);
    if (rc == 0 && index != NULL)
        rc = add_str(c, "index", index);
    if (rc == 0) {
        rc = add(c, "parameters", params);
        params = NULL;
    }
    json_object_put(params);
    if (rc != 0) {
        json_object_put(c);
        return NULL;
    }
    return c;
}

/* "template": {"name", "language": {"code"}, "components": [header?, body?, button*]}
 * as in "Send Message Template Text/Media/Interactive". */
static int build_template(json_object *msg, const wa_tpl_call_t *t)
{
    int rc = 0;
    json_object *tpl = json_object_new_object();
    json_object *lang = json_object_new_object();
    json_object *comps = json_object_new_array();
    if (tpl == NULL || lang == NULL || comps == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    rc = add_str(tpl, "name", t->name);
    if (rc == 0)
        rc = add_str(lang, "code", t->language);
    if (rc == 0) {
        rc = add(tpl, "language", lang);
        lang = NULL;
    }
    if (rc == 0 && t->header_kind != WA_TPL_HEADER_NONE) {
        json_object *p = t->header_kind == WA_TPL_HEADER_TEXT ? text_param(t->header_value)
                                                              : media_param("image", t->header_value);
        rc = push(comps, make_component("header", NULL, NULL, one_param(p)));
    }
    if (rc == 0 && t->n_body > 0) {
        json_object *params = json_object_new_array();
        rc = params != NULL ? 0 : CMN_ERR_NOMEM;
        for (size_t i = 0; rc == 0 && i < t->n_body; i++)
            rc = push(params, text_param(t->body[i]));
        if (rc != 0) {
            json_object_put(params);
            params = NULL;
        }
        if (rc == 0)
            rc = push(comps, make_component("body", NULL, NULL, params));
    }
    for (size_t i = 0; rc == 0 && i < t->n_buttons; i++) {
        char index[16];
        int quick = t->buttons[i].kind == WA_TPL_BUTTON_QUICK_REPLY;
        json_object *p = NULL;
        /* The index travels as a string, as in "Send Message Template
         * Interactive". */
        snprintf(index, sizeof index, "%d", t->buttons[i].index);
        if (quick) {
            p = json_object_new_object();
            if (p != NULL && (add_str(p, "type", "payload") != 0 || add_str(p, "payload", t->buttons[i].value) != 0)) {
                json_object_put(p);
                p = NULL;
            }
        } else {
            p = text_param(t->buttons[i].value);
        }
        rc = push(comps, make_component("button", quick ? "quick_reply" : "url", index, one_param(p)));
    }
    /* A template without variables has no components; the member is
     * optional in the spec's TemplateObject. */
    if (rc == 0 && json_object_array_length(comps) > 0) {
        rc = add(tpl, "components", comps);
        comps = NULL;
    }
    if (rc == 0) {
        rc = add(msg, "template", tpl);
        tpl = NULL;
    }
cleanup:
    json_object_put(comps);
    json_object_put(lang);
    json_object_put(tpl);
    return rc;
}

static int check_len(const char *what, const char *s, size_t max, char *errstr, size_t errlen)
{
    if (s == NULL || s[0] == '\0') {
        snprintf(errstr, errlen, "the %s is empty", what);
        return CMN_ERR_INVALID;
    }
    if (wa_utf8_chars(s) > max) {
        snprintf(errstr, errlen, "the %s is longer than %zu characters", what, max);
        return CMN_ERR_INVALID;
    }
    return 0;
}

/* {"type": "text", "text": h} header, or {"text": f} footer/body. */
static json_object *text_object(const char *type, const char *text)
{
    json_object *o = json_object_new_object();
    if (o == NULL || (type != NULL && add_str(o, "type", type) != 0) || add_str(o, "text", text) != 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* "interactive" as in "Send Reply Button" and "Send List Message". */
static int build_interactive(json_object *msg, const wa_content_t *c, const char *text)
{
    int rc = 0;
    json_object *inter = json_object_new_object();
    json_object *action = json_object_new_object();
    if (inter == NULL || action == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    rc = add_str(inter, "type", c->kind == WA_CONTENT_BUTTONS ? "button" : "list");
    if (rc == 0 && c->header != NULL)
        rc = add(inter, "header", text_object("text", c->header));
    if (rc == 0)
        rc = add(inter, "body", text_object(NULL, text));
    if (rc == 0 && c->footer != NULL)
        rc = add(inter, "footer", text_object(NULL, c->footer));
    if (rc == 0 && c->kind == WA_CONTENT_BUTTONS) {
        json_object *buttons = json_object_new_array();
        rc = buttons != NULL ? 0 : CMN_ERR_NOMEM;
        for (size_t i = 0; rc == 0 && i < c->n_buttons; i++) {
            json_object *b = json_object_new_object();
            json_object *reply = json_object_new_object();
            rc = (b == NULL || reply == NULL) ? CMN_ERR_NOMEM : 0;
            if (rc == 0)
                rc = add_str(reply, "id", c->buttons[i].id);
            if (rc == 0)
                rc = add_str(reply, "title", c->buttons[i].title);
            if (rc == 0)
                rc = add_str(b, "type", "reply");
            if (rc == 0) {
                rc = add(b, "reply", reply);
                reply = NULL;
            }
            json_object_put(reply);
            if (rc == 0)
                rc = push(buttons, b);
            else
                json_object_put(b);
        }
        if (rc == 0)
            rc = add(action, "buttons", buttons);
        else
            json_object_put(buttons);
    } else if (rc == 0) {
        json_object *sections = json_object_new_array();
        rc = sections != NULL ? add_str(action, "button", c->list_button) : CMN_ERR_NOMEM;
        for (size_t s = 0; rc == 0 && s < c->n_sections; s++) {
            const wa_section_t *sec = &c->sections[s];
            json_object *so = json_object_new_object();
            json_object *rows = json_object_new_array();
            rc = (so == NULL || rows == NULL) ? CMN_ERR_NOMEM : add_str(so, "title", sec->title);
            for (size_t r = 0; rc == 0 && r < sec->n_rows; r++) {
                const wa_row_t *row = &c->rows[sec->first_row + r];
                json_object *ro = json_object_new_object();
                rc = ro != NULL ? add_str(ro, "id", row->id) : CMN_ERR_NOMEM;
                if (rc == 0)
                    rc = add_str(ro, "title", row->title);
                if (rc == 0 && row->description != NULL)
                    rc = add_str(ro, "description", row->description);
                if (rc == 0)
                    rc = push(rows, ro);
                else
                    json_object_put(ro);
            }
            if (rc == 0) {
                rc = add(so, "rows", rows);
                rows = NULL;
            }
            json_object_put(rows);
            if (rc == 0)
                rc = push(sections, so);
            else
                json_object_put(so);
        }
        if (rc == 0)
            rc = add(action, "sections", sections);
        else
            json_object_put(sections);
    }
    if (rc == 0) {
        rc = add(inter, "action", action);
        action = NULL;
    }
    if (rc == 0) {
        rc = add(msg, "interactive", inter);
        inter = NULL;
    }
cleanup:
    json_object_put(action);
    json_object_put(inter);
    return rc;
}

static int valid_digits(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 15)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

int wa_meta_body(const wa_meta_msg_t *m, cmn_buf_t *out, char *errstr, size_t errlen)
{
    int rc = 0;
    json_object *msg = NULL;
    cmn_buf_reset(out);
    if (!valid_digits(m->to)) {
        snprintf(errstr, errlen, "the recipient is not a phone number of 1 to 15 digits");
        return CMN_ERR_INVALID;
    }
    if (m->biz_opaque != NULL && strlen(m->biz_opaque) > WA_META_OPAQUE_MAX) {
        snprintf(errstr, errlen, "biz_opaque_callback_data is longer than %d characters", WA_META_OPAQUE_MAX);
        return CMN_ERR_INVALID;
    }
    const wa_content_t *c = m->content;
    const char *type = "template";
    if (m->tpl == NULL) {
        if (c == NULL || c->kind == WA_CONTENT_TEMPLATE) {
            snprintf(errstr, errlen, "a template message needs its template");
            return CMN_ERR_INVALID;
        }
        switch (c->kind) {
        case WA_CONTENT_TEXT:
            type = "text";
            rc = check_len("text", m->text, WA_TEXT_MAX_CHARS, errstr, errlen);
            break;
        case WA_CONTENT_IMAGE:
        case WA_CONTENT_DOCUMENT:
            type = c->kind == WA_CONTENT_IMAGE ? "image" : "document";
            /* No caption at all is fine for media; a given one must fit. */
            if (c->caption != NULL || (m->text != NULL && m->text[0] != '\0'))
                rc = check_len("caption", c->caption != NULL ? c->caption : m->text, WA_CAPTION_MAX_CHARS, errstr,
                               errlen);
            break;
        case WA_CONTENT_BUTTONS:
        case WA_CONTENT_LIST:
            type = "interactive";
            rc = check_len("interactive body", m->text, WA_INTERACTIVE_BODY_MAX, errstr, errlen);
            break;
        case WA_CONTENT_TEMPLATE:
            break;
        }
        if (rc != 0)
            return rc;
    }

    msg = json_object_new_object();
    rc = msg != NULL ? add_str(msg, "messaging_product", "whatsapp") : CMN_ERR_NOMEM;
    if (rc == 0)
        rc = add_str(msg, "recipient_type", "individual");
    if (rc == 0)
        rc = add_str(msg, "to", m->to);
    if (rc == 0)
        rc = add_str(msg, "type", type);
    if (rc != 0)
        goto cleanup;
    if (m->tpl != NULL) {
        rc = build_template(msg, m->tpl);
    } else if (c->kind == WA_CONTENT_TEXT) {
        json_object *t = json_object_new_object();
        rc = t != NULL ? add_str(t, "body", m->text) : CMN_ERR_NOMEM;
        if (rc == 0)
            rc = add(t, "preview_url", json_object_new_boolean(c->preview_url));
        if (rc == 0)
            rc = add(msg, "text", t);
        else
            json_object_put(t);
    } else if (c->kind == WA_CONTENT_IMAGE || c->kind == WA_CONTENT_DOCUMENT) {
        json_object *media = json_object_new_object();
        const char *caption = c->caption != NULL ? c->caption : m->text;
        rc = media != NULL ? add_str(media, "link", c->link) : CMN_ERR_NOMEM;
        if (rc == 0 && caption != NULL && caption[0] != '\0')
            rc = add_str(media, "caption", caption);
        if (rc == 0)
            rc = add(msg, type, media);
        else
            json_object_put(media);
    } else {
        rc = build_interactive(msg, c, m->text);
    }
    if (rc == 0 && m->biz_opaque != NULL && m->biz_opaque[0] != '\0') {
        char opaque[WA_META_OPAQUE_MAX + 1];
        int n = m->attempt > 0 ? snprintf(opaque, sizeof opaque, "%s:%d:%d", m->biz_opaque, m->hop, m->attempt)
                               : snprintf(opaque, sizeof opaque, "%s", m->biz_opaque);
        if (n < 0 || (size_t)n >= sizeof opaque) {
            snprintf(errstr, errlen, "biz_opaque_callback_data is longer than %d characters", WA_META_OPAQUE_MAX);
            rc = CMN_ERR_INVALID;
        } else {
            rc = add_str(msg, "biz_opaque_callback_data", opaque);
        }
    }
    if (rc == 0)
        rc = cmn_json_to_buf(msg, out);
cleanup:
    if (rc == CMN_ERR_NOMEM)
        snprintf(errstr, errlen, "out of memory");
    json_object_put(msg);
    return rc;
}

int wa_meta_valid_version(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n < 2 || n > 16 || s[0] != 'v' || !isdigit((unsigned char)s[1]))
        return 0;
    for (size_t i = 1; i < n; i++) {
        if (!isdigit((unsigned char)s[i]) && s[i] != '.')
            return 0;
    }
    return 1;
}

int wa_meta_url(const char *api_base, const char *version, const char *phone_number_id, cmn_buf_t *out)
{
    cmn_buf_reset(out);
    if (!wa_valid_http_url(api_base) || !wa_meta_valid_version(version) || !valid_digits(phone_number_id))
        return CMN_ERR_INVALID;
    size_t len = strlen(api_base);
    while (len > 0 && api_base[len - 1] == '/')
        len--;
    int rc = cmn_buf_append(out, api_base, len);
    if (rc == 0)
        rc = cmn_buf_printf(out, "/%s/%s/messages", version, phone_number_id);
    return rc == 0 ? 0 : CMN_ERR_NOMEM;
}

/* ------------------------------------------------------------- parsing */

int wa_meta_parse_success(const char *body, size_t len, char *id, size_t idlen, char *status, size_t statuslen)
{
    char why[128];
    int rc = CMN_ERR_PARSE;
    if (idlen > 0)
        id[0] = '\0';
    if (statuslen > 0)
        status[0] = '\0';
    json_object *root = body != NULL ? cmn_json_parse(body, len, why, sizeof why) : NULL;
    json_object *msgs = cmn_json_get_array(root, "messages");
    json_object *first = msgs != NULL && json_object_array_length(msgs) > 0 ? json_object_array_get_idx(msgs, 0) : NULL;
    const char *wamid = cmn_json_get_string(first, "id");
    if (wamid != NULL && wamid[0] != '\0' && strlen(wamid) < idlen) {
        snprintf(id, idlen, "%s", wamid);
        const char *st = cmn_json_get_string(first, "message_status");
        if (st != NULL && statuslen > 0)
            snprintf(status, statuslen, "%s", st);
        rc = 0;
    }
    json_object_put(root);
    return rc;
}

int wa_meta_parse_error(const char *body, size_t len, wa_meta_error_t *out)
{
    char why[128];
    int64_t v = 0;
    int rc = CMN_ERR_PARSE;
    memset(out, 0, sizeof *out);
    json_object *root = body != NULL && len > 0 ? cmn_json_parse(body, len, why, sizeof why) : NULL;
    json_object *err = cmn_json_get_object(root, "error");
    if (err == NULL)
        goto cleanup;
    if (cmn_json_get_int64(err, "code", &v) == 0)
        out->code = (long)v;
    if (cmn_json_get_int64(err, "error_subcode", &v) == 0)
        out->subcode = (long)v;
    json_object *tr = json_object_object_get(err, "is_transient");
    out->is_transient = tr != NULL && json_object_is_type(tr, json_type_boolean) && json_object_get_boolean(tr);
    const char *s = cmn_json_get_string(err, "type");
    if (s != NULL)
        snprintf(out->type, sizeof out->type, "%s", s);
    s = cmn_json_get_string(err, "message");
    if (s != NULL)
        snprintf(out->message, sizeof out->message, "%s", s);
    s = cmn_json_get_string(cmn_json_get_object(err, "error_data"), "details");
    if (s != NULL)
        snprintf(out->details, sizeof out->details, "%s", s);
    s = cmn_json_get_string(err, "fbtrace_id");
    if (s != NULL)
        snprintf(out->fbtrace_id, sizeof out->fbtrace_id, "%s", s);
    wa_redact_numbers(out->message);
    wa_redact_numbers(out->details);
    if (out->code != 0 || out->message[0] != '\0')
        rc = 0;
cleanup:
    json_object_put(root);
    return rc;
}

static int is_separator(char c)
{
    return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')';
}

void wa_redact_numbers(char *s)
{
    static const char mark[] = "<phone>";
    const size_t mlen = sizeof mark - 1;
    size_t r = 0, w = 0;
    char prev = '\0'; /* the original character before s[r]: writes may have overwritten s[r - 1] */
    if (s == NULL)
        return;
    while (s[r] != '\0') {
        unsigned char c = (unsigned char)s[r];
        /* A candidate starts at a digit or '+digit' not glued to a word, so
         * ids like "wamid.HBg1234567" keep their characters. */
        int glued = isalnum((unsigned char)prev) || prev == '_';
        int starts = !glued && (isdigit(c) || (c == '+' && isdigit((unsigned char)s[r + 1])));
        if (!starts) {
            prev = s[r];
            s[w++] = s[r++];
            continue;
        }
        size_t end = r + (c == '+' ? 1 : 0);
        size_t digits = 0, last = end;
        for (; s[end] != '\0'; end++) {
            if (isdigit((unsigned char)s[end])) {
                digits++;
                last = end + 1;
            } else if (!is_separator(s[end])) {
                break;
            }
        }
        if (digits >= 7 && !isalpha((unsigned char)s[last]) && s[last] != '_') {
            /* At least 7 digits out, 7 bytes in: the text never grows. */
            prev = s[last - 1];
            memcpy(s + w, mark, mlen);
            w += mlen;
            r = last;
            continue;
        }
        /* A short number (an error code, a count): keep it as it is. */
        while (r < last) {
            prev = s[r];
            s[w++] = s[r++];
        }
    }
    s[w] = '\0';
}
