/* buf.c - growable, always NUL-terminated byte buffer. */
#include "crm/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"

/* The first allocation is large enough for a typical log line or small JSON
 * document, so most buffers allocate once. */
#define BUF_MIN_CAP 64

/* Makes room for `extra` more bytes plus the NUL terminator. Capacity doubles
 * so a sequence of appends costs amortised O(1) per byte; every addition is
 * checked because lengths may come from untrusted input. */
static int buf_reserve(cmn_buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) {
        return CMN_ERR_OVERFLOW;
    }
    size_t need = b->len + extra + 1;
    if (b->data != NULL && need <= b->cap) {
        return CMN_OK;
    }
    size_t cap = b->cap < BUF_MIN_CAP ? BUF_MIN_CAP : b->cap;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        return CMN_ERR_NOMEM;
    }
    /* Fresh storage is terminated at once, so data is a valid string from
     * the moment it exists. */
    p[b->len] = '\0';
    b->data = p;
    b->cap = cap;
    return CMN_OK;
}

int cmn_buf_append(cmn_buf_t *b, const void *data, size_t len)
{
    if (b == NULL || (data == NULL && len > 0)) {
        return CMN_ERR_INVALID;
    }
    int rc = buf_reserve(b, len);
    if (rc != CMN_OK) {
        return rc;
    }
    if (len > 0) {
        memcpy(b->data + b->len, data, len);
    }
    b->len += len;
    b->data[b->len] = '\0';
    return CMN_OK;
}

int cmn_buf_puts(cmn_buf_t *b, const char *s)
{
    if (s == NULL) {
        return CMN_ERR_INVALID;
    }
    return cmn_buf_append(b, s, strlen(s));
}

int cmn_buf_putc(cmn_buf_t *b, char c)
{
    return cmn_buf_append(b, &c, 1);
}

/* Redeclared with the format attribute so -Wformat-nonliteral knows fmt is
 * checked at our callers; the public header leaves it off on purpose so that
 * forwarding wrappers elsewhere need not carry the attribute. */
int cmn_buf_vprintf(cmn_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

int cmn_buf_vprintf(cmn_buf_t *b, const char *fmt, va_list ap)
{
    if (b == NULL || fmt == NULL) {
        return CMN_ERR_INVALID;
    }
    /* Measure first with a copy of ap: a va_list can be consumed only once. */
    va_list measure;
    va_copy(measure, ap);
    int n = vsnprintf(NULL, 0, fmt, measure);
    va_end(measure);
    if (n < 0) {
        return CMN_ERR_INVALID;
    }
    int rc = buf_reserve(b, (size_t)n);
    if (rc != CMN_OK) {
        return rc;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return CMN_OK;
}

int cmn_buf_printf(cmn_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = cmn_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int cmn_buf_put_json_string(cmn_buf_t *b, const char *s)
{
    if (b == NULL || s == NULL) {
        return CMN_ERR_INVALID;
    }
    static const char hex[] = "0123456789abcdef";
    /* On failure the buffer is rolled back, so a caller never emits half a
     * string literal (which would make the whole document invalid). */
    size_t start = b->len;
    int rc = cmn_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; rc == CMN_OK && *p != '\0'; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            rc = cmn_buf_append(b, esc, sizeof esc);
        } else if (c < 0x20) {
            /* RFC 8259 requires U+0000..U+001F to be escaped. The short forms
             * keep the common ones readable in logs; the rest use \u00XX. */
            const char *shortform = NULL;
            switch (c) {
            case '\b': shortform = "\\b"; break;
            case '\f': shortform = "\\f"; break;
            case '\n': shortform = "\\n"; break;
            case '\r': shortform = "\\r"; break;
            case '\t': shortform = "\\t"; break;
            default: break;
            }
            if (shortform != NULL) {
                rc = cmn_buf_append(b, shortform, 2);
            } else {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0x0f]};
                rc = cmn_buf_append(b, esc, sizeof esc);
            }
        } else {
            /* Bytes >= 0x80 are UTF-8 sequences and pass through untouched;
             * JSON text is UTF-8, so no \u escaping is needed for them. */
            rc = cmn_buf_putc(b, (char)c);
        }
    }
    if (rc == CMN_OK) {
        rc = cmn_buf_putc(b, '"');
    }
    if (rc != CMN_OK && b->data != NULL) {
        b->len = start;
        b->data[start] = '\0';
    }
    return rc;
}

void cmn_buf_reset(cmn_buf_t *b)
{
    if (b == NULL) {
        return;
    }
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}

char *cmn_buf_steal(cmn_buf_t *b)
{
    if (b == NULL) {
        return NULL;
    }
    /* An untouched buffer has no storage yet; the contract promises a string,
     * so hand out an empty one. */
    if (b->data == NULL && buf_reserve(b, 0) != CMN_OK) {
        return NULL;
    }
    char *p = b->data;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

void cmn_buf_free(cmn_buf_t *b)
{
    if (b == NULL) {
        return;
    }
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
