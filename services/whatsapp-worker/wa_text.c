/* wa_text.c - the free-text templates over the shared loader, preloaded at
 * start. See wa_text.h and crm/templates.h. */
#include "wa_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/templates.h"

struct wa_text {
    cmn_templates_t *tpl; /* preloaded: immutable, no disk access after wa_text_new() */
    char *file;
};

wa_text_t *wa_text_new(const char *dir, const char *file, const char *fallback_locale, char *errstr,
                       size_t errlen)
{
    cmn_templates_opts_t opts = {
        .dir = dir, .fallback_locale = fallback_locale, .max_bytes = WA_TEXT_MAX_BYTES, .preload_file = file};
    wa_text_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    t->file = file != NULL ? strdup(file) : NULL;
    if (t->file == NULL) {
        snprintf(errstr, errlen, file != NULL ? "out of memory" : "template file name is not valid");
        goto fail;
    }
    t->tpl = cmn_templates_new(&opts, errstr, errlen);
    if (t->tpl == NULL)
        goto fail;
    return t;
fail:
    wa_text_destroy(t);
    return NULL;
}

void wa_text_destroy(wa_text_t *t)
{
    if (t == NULL)
        return;
    cmn_templates_destroy(t->tpl);
    free(t->file);
    free(t);
}

size_t wa_text_count(const wa_text_t *t)
{
    return t != NULL ? cmn_templates_preloaded(t->tpl) : 0;
}

/* The preloaded text of name for the first locale of the chain that has one
 * (owned by t->tpl), or NULL; used receives that locale. A malformed name
 * has no template. */
static const char *find(const wa_text_t *t, const char *name, const char *locale,
                        char used[CMN_TEMPLATES_LOCALE_MAX + 1])
{
    const char *text = NULL;
    cmn_templates_lease_t lease = {0};
    used[0] = '\0';
    if (t == NULL || name == NULL)
        return NULL;
    /* Preloaded texts are owned by t->tpl, never by the lease, so releasing
     * it right away leaves text valid. */
    int rc = cmn_templates_find(t->tpl, name, locale, t->file, &lease, &text, used);
    cmn_templates_lease_release(&lease);
    return rc == 0 ? text : NULL;
}

int wa_text_has(const wa_text_t *t, const char *name, const char *locale)
{
    char used[CMN_TEMPLATES_LOCALE_MAX + 1];
    return find(t, name, locale, used) != NULL;
}

int wa_text_render(const wa_text_t *t, const char *name, const char *locale, json_object *data, cmn_buf_t *out,
                   char *errstr, size_t errlen)
{
    char why[200] = "";
    char used[CMN_TEMPLATES_LOCALE_MAX + 1];
    cmn_templates_lease_t lease = {0};
    const char *text = find(t, name, locale, used);
    int rc = 0;
    if (text == NULL) {
        snprintf(errstr, errlen, "no " WA_TEXT_FILE " for %s in the locale or its fallback",
                 name != NULL ? name : "(none)");
        return CMN_ERR_NOTFOUND;
    }
    cmn_buf_reset(out);
    rc = cmn_templates_render(t->tpl, text, strlen(text), data, 0, &lease, out, why, sizeof why);
    cmn_templates_lease_release(&lease);
    if (rc == CMN_ERR_NOMEM) {
        snprintf(errstr, errlen, "out of memory");
        return rc;
    }
    if (rc != 0) {
        snprintf(errstr, errlen, "%s/%s/" WA_TEXT_FILE ": %s", name, used, why);
        return rc;
    }
    /* The file's final line break is the editor's, not the message's. */
    while (out->len > 0 && (out->data[out->len - 1] == '\n' || out->data[out->len - 1] == '\r' ||
                            out->data[out->len - 1] == ' ' || out->data[out->len - 1] == '\t'))
        out->data[--out->len] = '\0';
    return 0;
}

json_object *wa_text_data_new(json_object *context, const cmn_recipient_t *r)
{
    return cmn_templates_data_new(context, r, CMN_CHANNEL_NONE);
}
