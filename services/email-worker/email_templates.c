/* email_templates.c - the email template set (subject, text and HTML body)
 * over the shared loader. See email_templates.h and crm/templates.h. */
#include "email_templates.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/templates.h"

_Static_assert(EMAIL_LOCALE_MAX == CMN_TEMPLATES_LOCALE_MAX, "email locales are the shared loader's locales");

#define FILE_SUBJECT "subject.mustache"
#define FILE_TEXT "body.txt.mustache"
#define FILE_HTML "body.html.mustache"

struct email_templates {
    cmn_templates_t *tpl;
};

email_templates_t *email_templates_new(const char *dir, const char *fallback_locale, char *errstr, size_t errlen)
{
    cmn_templates_opts_t opts = {.dir = dir, .fallback_locale = fallback_locale, .max_bytes = EMAIL_TEMPLATE_MAX_BYTES};
    email_templates_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    t->tpl = cmn_templates_new(&opts, errstr, errlen);
    if (t->tpl == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

void email_templates_destroy(email_templates_t *t)
{
    if (t == NULL)
        return;
    cmn_templates_destroy(t->tpl);
    free(t);
}

void email_rendered_clear(email_rendered_t *r)
{
    if (r == NULL)
        return;
    free(r->subject);
    free(r->text);
    free(r->html);
    memset(r, 0, sizeof *r);
}

size_t email_templates_locale_chain(const char *locale, const char *fallback,
                                    char chain[][EMAIL_LOCALE_MAX + 1], size_t max)
{
    return cmn_templates_locale_chain(locale, fallback, chain, max);
}

/* A subject is one line: the trailing whitespace and line breaks the file
 * ends with are left out of the template, so only data can put a line break
 * into the rendered subject (and the MIME builder refuses it). */
static size_t subject_len(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return n;
}

/* Renders tmpl (len bytes) into *out (malloc'd, "" when empty). */
static int render_one(cmn_templates_t *tpl, const char *tmpl, size_t len, json_object *data, int escape_html,
                      cmn_templates_lease_t *lease, char **out, const char *what, char *errstr, size_t errlen)
{
    cmn_buf_t buf = CMN_BUF_INIT;
    char why[256] = "";
    int rc = cmn_templates_render(tpl, tmpl, len, data, escape_html, lease, &buf, why, sizeof why);
    if (rc == 0) {
        /* An empty render leaves buf without storage; hand back "" instead. */
        rc = cmn_buf_puts(&buf, "");
    }
    if (rc == 0) {
        *out = cmn_buf_steal(&buf);
    } else {
        snprintf(errstr, errlen, "%s: %s", what, why[0] != '\0' ? why : cmn_strerror(rc));
    }
    cmn_buf_free(&buf);
    return rc;
}

int email_templates_render(email_templates_t *t, const char *name, const char *locale, json_object *data,
                           email_rendered_t *out, char *errstr, size_t errlen)
{
    char used[EMAIL_LOCALE_MAX + 1] = "";
    cmn_templates_lease_t lease = {0};
    const char *subject = NULL, *text = NULL, *html = NULL;
    int rc = 0;

    if (t == NULL || out == NULL || !cmn_templates_valid_name(name) || name[0] == '_') {
        snprintf(errstr, errlen, "template name is not valid");
        return CMN_ERR_INVALID;
    }
    /* A locale counts when its subject exists; its body is then required,
     * and its HTML body optional (a text-only email). */
    rc = cmn_templates_find(t->tpl, name, locale, FILE_SUBJECT, &lease, &subject, used);
    if (rc == 0 && subject == NULL) {
        snprintf(errstr, errlen, "no templates for %s in locale %s or its fallbacks", name, used);
        rc = CMN_ERR_NOTFOUND;
        goto cleanup;
    }
    if (rc == 0)
        rc = cmn_templates_get(t->tpl, name, used, FILE_TEXT, &lease, &text);
    if (rc == 0 && text == NULL)
        rc = CMN_ERR_NOTFOUND;
    if (rc == 0)
        rc = cmn_templates_get(t->tpl, name, used, FILE_HTML, &lease, &html);
    if (rc != 0) {
        snprintf(errstr, errlen, "templates %s/%s cannot be loaded: %s", name, used,
                 rc == CMN_ERR_NOTFOUND ? "subject without body.txt" : cmn_strerror(rc));
        /* A set with a subject but no body, or a file over the size limit,
         * is a broken deployment that no retry can mend. */
        if (rc == CMN_ERR_NOTFOUND || rc == CMN_ERR_OVERFLOW)
            rc = CMN_ERR_TEMPLATE;
        goto cleanup;
    }
    memcpy(out->locale, used, sizeof out->locale); /* same size, NUL-terminated */
    rc = render_one(t->tpl, subject, subject_len(subject), data, 0, &lease, &out->subject, "subject", errstr,
                    errlen);
    if (rc == 0)
        rc = render_one(t->tpl, text, strlen(text), data, 0, &lease, &out->text, "body.txt", errstr, errlen);
    if (rc == 0 && html != NULL)
        rc = render_one(t->tpl, html, strlen(html), data, 1, &lease, &out->html, "body.html", errstr, errlen);
cleanup:
    cmn_templates_lease_release(&lease);
    return rc;
}

json_object *email_templates_data_new(json_object *context, const cmn_recipient_t *r, const char *unsubscribe_url)
{
    json_object *data = cmn_templates_data_new(context, r, CMN_CHANNEL_EMAIL);
    if (data == NULL)
        return NULL;
    /* The data object is our own (its members are shared references), so
     * replacing a key here leaves the dispatch's context untouched. */
    json_object_object_del(data, "unsubscribe_url");
    if (unsubscribe_url != NULL) {
        json_object *v = json_object_new_string(unsubscribe_url);
        if (v == NULL || json_object_object_add(data, "unsubscribe_url", v) != 0) {
            json_object_put(v);
            json_object_put(data);
            return NULL;
        }
    }
    return data;
}
