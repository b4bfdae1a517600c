/* sbx_form.c - form decoding. See sbx_form.h. */
#include "sbx_form.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int sbx_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t need = 0;
        unsigned int cp = 0;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1fu;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0fu;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07u;
        } else {
            return 0;
        }
        if (len - i <= need) /* truncated sequence */
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

size_t sbx_utf8_length(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p & 0xc0) != 0x80)
            n++;
    }
    return n;
}

/* Decodes [p, end) into a new string. Returns NULL with errstr set on a bad
 * escape, a NUL byte or invalid UTF-8 (what names the part in messages). */
static char *decode(const char *p, const char *end, const char *what, char *errstr, size_t errlen, int *nomem)
{
    size_t len = (size_t)(end - p);
    char *out = malloc(len + 1);
    size_t w = 0;
    *nomem = out == NULL;
    if (out == NULL)
        return NULL;
    for (const char *q = p; q < end; q++) {
        if (*q == '+') {
            out[w++] = ' ';
        } else if (*q == '%') {
            int hi = q + 1 < end ? hexval(q[1]) : -1;
            int lo = q + 2 < end ? hexval(q[2]) : -1;
            if (hi < 0 || lo < 0) {
                snprintf(errstr, errlen, "malformed percent-escape in a parameter %s", what);
                goto fail;
            }
            out[w++] = (char)(hi * 16 + lo);
            q += 2;
        } else {
            out[w++] = *q;
        }
    }
    out[w] = '\0';
    if (memchr(out, '\0', w) != NULL) {
        snprintf(errstr, errlen, "a parameter %s contains a NUL byte", what);
        goto fail;
    }
    if (!sbx_utf8_valid(out, w)) {
        snprintf(errstr, errlen, "a parameter %s is not valid UTF-8", what);
        goto fail;
    }
    return out;
fail:
    free(out);
    return NULL;
}

int sbx_form_parse(const char *body, size_t len, sbx_form_t *out, char *errstr, size_t errlen)
{
    int rc = 0;
    size_t cap = 0;
    const char *p = body;
    const char *end = body != NULL ? body + len : NULL;
    out->pairs = NULL;
    out->n = 0;
    while (p != NULL && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp != NULL ? amp : end;
        if (stop == p) { /* "a=1&&b=2" or a trailing '&': an empty field is harmless */
            p = stop + 1;
            continue;
        }
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        if (eq == NULL || eq == p) {
            snprintf(errstr, errlen, "form field %zu is not name=value", out->n + 1);
            rc = CMN_ERR_PARSE;
            goto cleanup;
        }
        if (out->n == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 16;
            sbx_pair_t *grown = realloc(out->pairs, ncap * sizeof *grown);
            if (grown == NULL) {
                rc = CMN_ERR_NOMEM;
                goto cleanup;
            }
            out->pairs = grown;
            cap = ncap;
        }
        int nomem = 0;
        char *name = decode(p, eq, "name", errstr, errlen, &nomem);
        char *value = name != NULL ? decode(eq + 1, stop, "value", errstr, errlen, &nomem) : NULL;
        if (name == NULL || value == NULL) {
            free(name);
            free(value);
            rc = nomem ? CMN_ERR_NOMEM : CMN_ERR_PARSE;
            goto cleanup;
        }
        out->pairs[out->n].name = name;
        out->pairs[out->n].value = value;
        out->n++;
        p = stop + 1;
    }
cleanup:
    if (rc != 0)
        sbx_form_clear(out);
    return rc;
}

const char *sbx_form_get(const sbx_form_t *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->pairs[i].name, name) == 0)
            return f->pairs[i].value;
    }
    return NULL;
}

size_t sbx_form_count(const sbx_form_t *f, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n; i++)
        n += strcmp(f->pairs[i].name, name) == 0;
    return n;
}

void sbx_form_clear(sbx_form_t *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n; i++) {
        free(f->pairs[i].name);
        free(f->pairs[i].value);
    }
    free(f->pairs);
    f->pairs = NULL;
    f->n = 0;
}
