/* wh_form.c - form decoding and query encoding. */
#include "wh_form.h"

#include <stdlib.h>
#include <string.h>

#include "crm/err.h"

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes s[0..len) into a new string in *out. A decoded NUL is refused:
 * every consumer treats the values as C strings, and a NUL would let two
 * different values compare equal. */
static int decode(const char *s, size_t len, char **out)
{
    char *d = malloc(len + 1);
    size_t j = 0;
    *out = NULL;
    if (d == NULL)
        return CMN_ERR_NOMEM;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            d[j++] = ' ';
            continue;
        }
        if (c != '%') {
            if (c == '\0')
                goto invalid;
            d[j++] = (char)c;
            continue;
        }
        if (len - i < 3)
            goto invalid;
        int hi = hexval((unsigned char)s[i + 1]);
        int lo = hexval((unsigned char)s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            goto invalid;
        d[j++] = (char)(hi * 16 + lo);
        i += 2;
    }
    d[j] = '\0';
    *out = d;
    return 0;
invalid:
    free(d);
    return CMN_ERR_INVALID;
}

int wh_form_parse(const char *data, size_t len, wh_form_t *out)
{
    int rc = 0;
    if (out == NULL || (data == NULL && len > 0))
        return CMN_ERR_INVALID;
    memset(out, 0, sizeof *out);
    size_t pos = 0;
    while (pos < len) {
        const char *seg = data + pos;
        const char *amp = memchr(seg, '&', len - pos);
        size_t seglen = amp != NULL ? (size_t)(amp - seg) : len - pos;
        pos += seglen + 1;
        if (seglen == 0)
            continue;
        if (out->n == WH_FORM_MAX_PAIRS) {
            rc = CMN_ERR_INVALID;
            goto out;
        }
        if (out->pairs == NULL) {
            out->pairs = calloc(WH_FORM_MAX_PAIRS, sizeof *out->pairs);
            if (out->pairs == NULL) {
                rc = CMN_ERR_NOMEM;
                goto out;
            }
        }
        const char *eq = memchr(seg, '=', seglen);
        size_t nlen = eq != NULL ? (size_t)(eq - seg) : seglen;
        wh_form_pair_t *p = &out->pairs[out->n];
        rc = decode(seg, nlen, &p->name);
        if (rc == 0)
            rc = eq != NULL ? decode(eq + 1, seglen - nlen - 1, &p->value) : decode("", 0, &p->value);
        if (rc != 0) {
            free(p->name);
            p->name = NULL;
            goto out;
        }
        out->n++;
    }
out:
    if (rc != 0)
        wh_form_clear(out);
    return rc;
}

const char *wh_form_get(const wh_form_t *f, const char *name)
{
    if (f == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->pairs[i].name, name) == 0)
            return f->pairs[i].value;
    }
    return NULL;
}

int wh_form_add(wh_form_t *f, const char *name, const char *value)
{
    if (f == NULL || name == NULL || f->n == WH_FORM_MAX_PAIRS)
        return CMN_ERR_INVALID;
    if (f->pairs == NULL) {
        f->pairs = calloc(WH_FORM_MAX_PAIRS, sizeof *f->pairs);
        if (f->pairs == NULL)
            return CMN_ERR_NOMEM;
    }
    wh_form_pair_t *p = &f->pairs[f->n];
    p->name = strdup(name);
    p->value = strdup(value != NULL ? value : "");
    if (p->name == NULL || p->value == NULL) {
        free(p->name);
        free(p->value);
        p->name = NULL;
        p->value = NULL;
        return CMN_ERR_NOMEM;
    }
    f->n++;
    return 0;
}

void wh_form_clear(wh_form_t *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n; i++) {
        free(f->pairs[i].name);
        free(f->pairs[i].value);
    }
    free(f->pairs);
    memset(f, 0, sizeof *f);
}

int wh_form_encode(cmn_buf_t *out, const char *s)
{
    static const char HEX[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; p != NULL && *p != '\0'; p++) {
        int rc;
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            rc = cmn_buf_putc(out, (char)c);
        } else {
            char esc[3] = {'%', HEX[c >> 4], HEX[c & 15]};
            rc = cmn_buf_append(out, esc, 3);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}
