/* sms_templates.c - one-file templates over the shared loader. See
 * sms_templates.h and crm/templates.h. */
#include "sms_templates.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/templates.h"

_Static_assert(SMS_LOCALE_MAX == CMN_TEMPLATES_LOCALE_MAX, "SMS locales are the shared loader's locales");

struct sms_templates {
    cmn_templates_t *tpl;
    char *file;
};

sms_templates_t *sms_templates_new(const char *dir, const char *file, const char *fallback_locale, char *errstr,
                                   size_t errlen)
{
    cmn_templates_opts_t opts = {.dir = dir, .fallback_locale = fallback_locale, .max_bytes = SMS_TEMPLATE_MAX_BYTES};
    sms_templates_t *t = NULL;
    if (!cmn_templates_valid_name(file)) {
        snprintf(errstr, errlen, "template file name is not valid");
        return NULL;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    t->file = strdup(file);
    if (t->file == NULL) {
        snprintf(errstr, errlen, "out of memory");
        goto fail;
    }
    t->tpl = cmn_templates_new(&opts, errstr, errlen);
    if (t->tpl == NULL)
        goto fail;
    return t;
fail:
    sms_templates_destroy(t);
    return NULL;
}

void sms_templates_destroy(sms_templates_t *t)
{
    if (t == NULL)
        return;
    cmn_templates_destroy(t->tpl);
    free(t->file);
    free(t);
}

size_t sms_templates_locale_chain(const char *locale, const char *fallback, char chain[][SMS_LOCALE_MAX + 1],
                                  size_t max)
{
    return cmn_templates_locale_chain(locale, fallback, chain, max);
}

/* Every character of an SMS is paid for: the trailing line break editors
 * end files with must not be sent. */
static void trim_trailing_space(cmn_buf_t *b)
{
    while (b->len > 0 && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r' ||
                          b->data[b->len - 1] == ' ' || b->data[b->len - 1] == '\t'))
        b->data[--b->len] = '\0';
}

int sms_templates_render(sms_templates_t *t, const char *name, const char *locale, json_object *data,
                         cmn_buf_t *out, char locale_used[SMS_LOCALE_MAX + 1], char *errstr, size_t errlen)
{
    char why[256] = "";
    char tried[SMS_LOCALE_MAX + 1] = "";
    cmn_templates_lease_t lease = {0};
    const char *text = NULL;
    int rc = 0;

    locale_used[0] = '\0';
    if (t == NULL || out == NULL || !cmn_templates_valid_name(name) || name[0] == '_') {
        snprintf(errstr, errlen, "template name is not valid");
        return CMN_ERR_INVALID;
    }
    cmn_buf_reset(out);
    rc = cmn_templates_find(t->tpl, name, locale, t->file, &lease, &text, tried);
    if (rc == CMN_ERR_INVALID) {
        /* The name and the chain's locales are valid, so only the path's
         * length can be wrong. */
        snprintf(errstr, errlen, "template path too long");
        goto cleanup;
    }
    if (rc != 0) {
        snprintf(errstr, errlen, "template %s/%s/%s cannot be loaded: %s", name, tried, t->file, cmn_strerror(rc));
        /* A file over the size limit is a broken deployment that no retry
         * can mend; a read error may be passing. */
        if (rc == CMN_ERR_OVERFLOW)
            rc = CMN_ERR_TEMPLATE;
        goto cleanup;
    }
    if (text == NULL) {
        snprintf(errstr, errlen, "no %s for %s in locale %s or its fallbacks", t->file, name, tried);
        rc = CMN_ERR_NOTFOUND;
        goto cleanup;
    }
    memcpy(locale_used, tried, SMS_LOCALE_MAX + 1);
    rc = cmn_templates_render(t->tpl, text, strlen(text), data, 0, &lease, out, why, sizeof why);
    if (rc != 0) {
        snprintf(errstr, errlen, "%s/%s/%s: %s", name, locale_used, t->file, why[0] != '\0' ? why : cmn_strerror(rc));
        goto cleanup;
    }
    trim_trailing_space(out);
    /* An empty render leaves out without storage; hand back "" instead. */
    rc = cmn_buf_puts(out, "");
cleanup:
    cmn_templates_lease_release(&lease);
    return rc;
}

json_object *sms_templates_data_new(json_object *context, const cmn_recipient_t *r)
{
    return cmn_templates_data_new(context, r, CMN_CHANNEL_SMS);
}
