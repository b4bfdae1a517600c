/* email_mime.c - RFC 5322 / MIME message builder. See email_mime.h. */
#include "email_mime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "crm/err.h"

/* Header lines are kept within the RFC 5322 "SHOULD" of 78 columns. */
#define HDR_COLS 78
/* "=?UTF-8?Q?" + "?=" */
#define EW_OVERHEAD 12
/* Base64 and quoted-printable body lines (RFC 2045). */
#define B64_LINE 76
#define QP_LINE 76

static const char B64_ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char HEX[] = "0123456789ABCDEF";

/* detail is "<field> <what>"; neither ever holds the offending value. */
static void set_err(email_mime_error_t *err, const char *code, const char *field, const char *what)
{
    if (err == NULL)
        return;
    err->code = code;
    snprintf(err->detail, sizeof err->detail, "%s %s", field, what);
}

/* ------------------------------------------------------------ validation */

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 when it is
 * malformed (overlong, surrogate, above U+10FFFF, truncated). */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned int cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0u) != 0x80u)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

int email_mime_check_header_value(const char *field, const char *value, email_mime_error_t *err)
{
    if (value == NULL)
        return 0;
    const unsigned char *s = (const unsigned char *)value;
    size_t len = strlen(value);
    /* CR and LF are checked first and separately: they are the injection
     * vector, and the failure reason should say so. */
    if (strpbrk(value, "\r\n") != NULL) {
        set_err(err, "header_injection", field, "contains CR or LF");
        return CMN_ERR_INVALID;
    }
    for (size_t i = 0; i < len;) {
        if ((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7F) {
            set_err(err, "invalid_header", field, "contains a control character");
            return CMN_ERR_INVALID;
        }
        size_t n = utf8_seq_len(s + i, len - i);
        if (n == 0) {
            set_err(err, "invalid_header", field, "is not valid UTF-8");
            return CMN_ERR_INVALID;
        }
        i += n;
    }
    return 0;
}

static int is_atext(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

int email_mime_valid_address(const char *addr)
{
    if (addr == NULL)
        return 0;
    size_t len = strlen(addr);
    const char *at = strchr(addr, '@');
    if (len < 3 || len > 254 || at == NULL || strchr(at + 1, '@') != NULL)
        return 0;
    size_t local_len = (size_t)(at - addr);
    if (local_len == 0 || local_len > 64 || addr[0] == '.' || at[-1] == '.')
        return 0;
    for (size_t i = 0; i < local_len; i++) {
        unsigned char c = (unsigned char)addr[i];
        if (c == '.') {
            if (addr[i + 1] == '.')
                return 0;
        } else if (!is_atext(c)) {
            return 0;
        }
    }
    const char *dom = at + 1;
    size_t label = 0;
    for (const char *p = dom;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0 || label > 63 || p[-1] == '-')
                return 0;
            if (*p == '\0')
                break;
            label = 0;
            continue;
        }
        unsigned char c = (unsigned char)*p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok || (label == 0 && c == '-'))
            return 0;
        label++;
    }
    return 1;
}

static int valid_token_chars(const char *s, size_t min, size_t max, int allow_dash)
{
    size_t len = strlen(s);
    if (len < min || len > max)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 (allow_dash && c == '-');
        if (!ok)
            return 0;
    }
    return 1;
}

/* RFC 2045 token character: printable ASCII except space and tspecials. */
static int is_mime_token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7F && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* "type/subtype", each 1..64 token characters. */
static int valid_content_type(const char *ct)
{
    const char *slash = strchr(ct, '/');
    if (slash == NULL)
        return 0;
    size_t tlen = (size_t)(slash - ct), slen = strlen(slash + 1);
    if (tlen == 0 || tlen > 64 || slen == 0 || slen > 64)
        return 0;
    for (const char *p = ct; *p != '\0'; p++) {
        if (p != slash && !is_mime_token_char((unsigned char)*p))
            return 0;
    }
    return 1;
}

/* -------------------------------------------------------------- encoders */

int email_mime_format_date(int64_t epoch_ms, char *out, size_t outlen)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(epoch_ms / 1000);
    struct tm tm;
    if (out == NULL || gmtime_r(&t, &tm) == NULL)
        return CMN_ERR_INVALID;
    /* Built by hand rather than with strftime("%a %b") so the names are
     * English whatever the process locale is, as RFC 5322 requires. */
    int n = snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
                     months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return (n < 0 || (size_t)n >= outlen) ? CMN_ERR_OVERFLOW : 0;
}

int email_mime_base64_encode(const void *in, size_t len, cmn_buf_t *out)
{
    const unsigned char *s = in;
    char quad[4];
    size_t col = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned int v = (unsigned int)s[i] << 16;
        size_t rem = len - i;
        if (rem > 1)
            v |= (unsigned int)s[i + 1] << 8;
        if (rem > 2)
            v |= s[i + 2];
        quad[0] = B64_ALPHABET[(v >> 18) & 63];
        quad[1] = B64_ALPHABET[(v >> 12) & 63];
        quad[2] = rem > 1 ? B64_ALPHABET[(v >> 6) & 63] : '=';
        quad[3] = rem > 2 ? B64_ALPHABET[v & 63] : '=';
        int rc = cmn_buf_append(out, quad, 4);
        if (rc != 0)
            return rc;
        col += 4;
        if (col >= B64_LINE) {
            rc = cmn_buf_puts(out, "\r\n");
            if (rc != 0)
                return rc;
            col = 0;
        }
    }
    return col > 0 ? cmn_buf_puts(out, "\r\n") : 0;
}

static int b64_value(unsigned char c)
{
    const char *p = (c == '\0') ? NULL : strchr(B64_ALPHABET, c);
    return p == NULL ? -1 : (int)(p - B64_ALPHABET);
}

int email_mime_base64_decode(const char *in, size_t in_len, size_t max_len, unsigned char **out,
                             size_t *out_len)
{
    int rc = 0;
    unsigned char *buf = NULL;
    *out = NULL;
    *out_len = 0;
    /* Upper bound of the decoded size; the exact size is known at the end. */
    size_t cap = in_len / 4 * 3 + 3;
    buf = malloc(cap + 1);
    if (buf == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    unsigned int acc = 0;
    size_t nbits_chars = 0, n = 0, pad = 0;
    for (size_t i = 0; i < in_len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad > 0) { /* data after padding is malformed */
            rc = CMN_ERR_PARSE;
            goto cleanup;
        }
        acc = (acc << 6) | (unsigned int)v;
        nbits_chars++;
        if (nbits_chars == 4) {
            buf[n++] = (unsigned char)(acc >> 16);
            buf[n++] = (unsigned char)(acc >> 8);
            buf[n++] = (unsigned char)acc;
            acc = 0;
            nbits_chars = 0;
        }
        if (n > max_len) {
            rc = CMN_ERR_OVERFLOW;
            goto cleanup;
        }
    }
    /* Two or three leftover characters carry one or two bytes; one is invalid. */
    if (nbits_chars == 1 || pad > 2) {
        rc = CMN_ERR_PARSE;
        goto cleanup;
    }
    if (nbits_chars == 2) {
        buf[n++] = (unsigned char)(acc >> 4);
    } else if (nbits_chars == 3) {
        buf[n++] = (unsigned char)(acc >> 10);
        buf[n++] = (unsigned char)(acc >> 2);
    }
    if (n > max_len) {
        rc = CMN_ERR_OVERFLOW;
        goto cleanup;
    }
    *out = buf;
    *out_len = n;
    buf = NULL;
cleanup:
    free(buf);
    return rc;
}

int email_mime_qp_encode(const char *in, size_t len, cmn_buf_t *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t col = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        int rc;
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < len && s[i + 1] == '\n')
                i++;
            rc = cmn_buf_puts(out, "\r\n");
            if (rc != 0)
                return rc;
            col = 0;
            continue;
        }
        int last_on_line = (i + 1 == len) || s[i + 1] == '\r' || s[i + 1] == '\n';
        /* A soft line break needs one column for its '='; the last character
         * before a hard break does not. */
        size_t limit = last_on_line ? QP_LINE : QP_LINE - 1;
        for (int pass = 0; pass < 2; pass++) {
            /* Whitespace at the end of a line would be stripped in transit;
             * a '.' starting a line is escaped so no relay can take it for
             * the SMTP end-of-data marker. */
            int literal = ((c >= 33 && c <= 126 && c != '=') || c == ' ' || c == '\t') &&
                          !((c == ' ' || c == '\t') && last_on_line) && !(c == '.' && col == 0);
            size_t tlen = literal ? 1 : 3;
            if (col + tlen > limit && pass == 0) {
                rc = cmn_buf_puts(out, "=\r\n");
                if (rc != 0)
                    return rc;
                col = 0;
                continue; /* re-decide: the character now starts a line */
            }
            if (literal) {
                rc = cmn_buf_putc(out, (char)c);
            } else {
                char trip[3] = {'=', HEX[c >> 4], HEX[c & 15]};
                rc = cmn_buf_append(out, trip, 3);
            }
            if (rc != 0)
                return rc;
            col += tlen;
            break;
        }
    }
    return 0;
}

/* RFC 2047 5(3): the characters a "Q" word may carry literally in a phrase
 * (the strictest context; using it everywhere keeps one encoder). */
static int q_literal(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '!' ||
           c == '*' || c == '+' || c == '-' || c == '/';
}

static size_t q_len(const unsigned char *s, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += (q_literal(s[i]) || s[i] == ' ') ? 1 : 3;
    return total;
}

static size_t b_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

static int put_q(cmn_buf_t *out, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc;
        if (q_literal(s[i])) {
            rc = cmn_buf_putc(out, (char)s[i]);
        } else if (s[i] == ' ') {
            rc = cmn_buf_putc(out, '_');
        } else {
            char trip[3] = {'=', HEX[s[i] >> 4], HEX[s[i] & 15]};
            rc = cmn_buf_append(out, trip, 3);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int put_b(cmn_buf_t *out, const unsigned char *s, size_t n)
{
    /* One encoded word never exceeds 75 chars, so its base64 fits one line. */
    cmn_buf_t tmp = CMN_BUF_INIT;
    int rc = email_mime_base64_encode(s, n, &tmp);
    if (rc == 0 && tmp.len >= 2)
        rc = cmn_buf_append(out, tmp.data, tmp.len - 2); /* without its CRLF */
    cmn_buf_free(&tmp);
    return rc;
}

/* Appends the separator before a word of wlen columns: a space when the
 * word still fits on the current line, else a fold (CRLF and a space). */
static int put_sep(cmn_buf_t *out, size_t *col, size_t wlen)
{
    if (*col + 1 + wlen <= HDR_COLS) {
        *col += 1 + wlen;
        return cmn_buf_putc(out, ' ');
    }
    *col = 1 + wlen;
    return cmn_buf_puts(out, "\r\n ");
}

/* Appends len bytes of s as RFC 2047 encoded words, each preceded by a
 * separator (readers drop the whitespace between adjacent encoded words).
 * Words are as long as the line allows, up to 75 chars. */
static int put_encoded_words(cmn_buf_t *out, size_t *col, const char *value, size_t len)
{
    const unsigned char *s = (const unsigned char *)value;
    int use_q = q_len(s, len) <= b_len(len);
    size_t i = 0;
    int rc = 0;
    do {
        /* Room on this line after the separator; too little for a useful
         * word means the word starts on a new line. */
        size_t room = *col + 1 < HDR_COLS ? HDR_COLS - *col - 1 : 0;
        if (room < EW_OVERHEAD + 12)
            room = HDR_COLS - 1;
        if (room > EMAIL_MIME_MAX_ENCODED_WORD)
            room = EMAIL_MIME_MAX_ENCODED_WORD;
        size_t payload = room - EW_OVERHEAD;
        /* Take whole characters while the encoded payload fits: RFC 2047 6
         * forbids splitting a character across words. */
        size_t j = i;
        while (j < len) {
            size_t n = utf8_seq_len(s + j, len - j);
            if (n == 0)
                n = 1; /* validated by the caller; be safe anyway */
            size_t need = use_q ? q_len(s + i, j + n - i) : b_len(j + n - i);
            if (need > payload)
                break;
            j += n;
        }
        if (j == i && i < len)
            return CMN_ERR_OVERFLOW; /* cannot happen with >= 12 chars of payload */
        size_t wlen = EW_OVERHEAD + (use_q ? q_len(s + i, j - i) : b_len(j - i));
        rc = put_sep(out, col, wlen);
        if (rc == 0)
            rc = cmn_buf_puts(out, use_q ? "=?UTF-8?Q?" : "=?UTF-8?B?");
        if (rc == 0)
            rc = use_q ? put_q(out, s + i, j - i) : put_b(out, s + i, j - i);
        if (rc == 0)
            rc = cmn_buf_puts(out, "?=");
        if (rc != 0)
            return rc;
        i = j;
    } while (i < len);
    return 0;
}

/* 1 when value can go into an unstructured header as it is: printable
 * ASCII, single spaces, no leading or trailing space, nothing a reader
 * could take for an encoded word, and no word too long for a line. */
static int raw_ascii_ok(const char *value)
{
    size_t len = strlen(value);
    if (len == 0)
        return 1;
    if (value[0] == ' ' || value[len - 1] == ' ' || strstr(value, "=?") != NULL || strstr(value, "  ") != NULL)
        return 0;
    size_t word = 0;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c == ' ' || c == '\0') {
            if (word > HDR_COLS - 1)
                return 0;
            word = 0;
            continue;
        }
        if (c < 0x20 || c > 0x7E)
            return 0;
        word++;
    }
    return 1;
}

int email_mime_put_unstructured(cmn_buf_t *out, const char *name, const char *value)
{
    int rc = cmn_buf_printf(out, "%s:", name);
    size_t col = strlen(name) + 1;
    if (rc != 0 || value[0] == '\0')
        return rc != 0 ? rc : cmn_buf_puts(out, "\r\n");
    if (!raw_ascii_ok(value)) {
        rc = put_encoded_words(out, &col, value, strlen(value));
        return rc != 0 ? rc : cmn_buf_puts(out, "\r\n");
    }
    /* Fold before a space when the next word would pass 78 columns; the
     * reader's unfolding (dropping CRLF) restores the exact value. */
    for (const char *p = value; rc == 0 && *p != '\0';) {
        size_t wlen = strcspn(p, " ");
        rc = put_sep(out, &col, wlen);
        if (rc == 0)
            rc = cmn_buf_append(out, p, wlen);
        p += wlen;
        if (*p == ' ')
            p++;
    }
    return rc != 0 ? rc : cmn_buf_puts(out, "\r\n");
}

/* RFC 5322 atext: a word made only of these can stand unquoted in a phrase. */
static int is_atom(const char *s, size_t len)
{
    if (len == 0 || (len >= 2 && s[0] == '=' && s[1] == '?'))
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_atext((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

/* Appends a display name that cannot be one quoted string: words that are
 * plain atoms stay readable, each run of other words (spaces between them
 * included) becomes encoded words. Keeping runs short matters beyond
 * looks: some readers (Python's email package among them) keep the space
 * between two adjacent encoded words of a phrase, contrary to RFC 2047. */
static int put_phrase(cmn_buf_t *out, size_t *col, const char *name)
{
    int rc = 0;
    const char *p = name;
    for (;;) {
        size_t wlen = strcspn(p, " ");
        if (is_atom(p, wlen)) {
            rc = put_sep(out, col, wlen);
            if (rc == 0)
                rc = cmn_buf_append(out, p, wlen);
        } else {
            /* Extend the run over the following non-atom words; an empty
             * word (a doubled or trailing space) joins the run too. */
            const char *end = p + wlen;
            while (*end == ' ') {
                size_t next = strcspn(end + 1, " ");
                if (is_atom(end + 1, next))
                    break;
                end += 1 + next;
            }
            wlen = (size_t)(end - p);
            if (wlen > 0)
                rc = put_encoded_words(out, col, p, wlen);
        }
        if (rc != 0)
            return rc;
        p += wlen;
        if (*p == '\0')
            return 0;
        p++; /* the space between two segments is their separator */
    }
}

int email_mime_put_mailbox(cmn_buf_t *out, const char *name, const email_address_t *a)
{
    int rc = cmn_buf_printf(out, "%s:", name);
    size_t col = strlen(name) + 1;
    size_t alen = strlen(a->addr);
    if (rc != 0)
        return rc;
    if (a->name == NULL || a->name[0] == '\0') {
        rc = put_sep(out, &col, alen);
        if (rc == 0)
            rc = cmn_buf_puts(out, a->addr);
        return rc != 0 ? rc : cmn_buf_puts(out, "\r\n");
    }
    /* A quoted string is readable in raw mail and needs only \ and " escaped;
     * anything else (non-ASCII, too long, looks like an encoded word) goes
     * through put_phrase. */
    int quotable = strstr(a->name, "=?") == NULL;
    size_t qlen = 2;
    for (const char *p = a->name; quotable && *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c > 0x7E)
            quotable = 0;
        qlen += (c == '"' || c == '\\') ? 2 : 1;
    }
    if (quotable && col + 1 + qlen <= HDR_COLS) {
        rc = put_sep(out, &col, qlen);
        if (rc == 0)
            rc = cmn_buf_putc(out, '"');
        for (const char *p = a->name; rc == 0 && *p != '\0'; p++) {
            if (*p == '"' || *p == '\\')
                rc = cmn_buf_putc(out, '\\');
            if (rc == 0)
                rc = cmn_buf_putc(out, *p);
        }
        if (rc == 0)
            rc = cmn_buf_putc(out, '"');
    } else {
        rc = put_phrase(out, &col, a->name);
    }
    if (rc == 0)
        rc = put_sep(out, &col, alen + 2);
    if (rc == 0)
        rc = cmn_buf_printf(out, "<%s>\r\n", a->addr);
    return rc;
}

/* ---------------------------------------------------------------- bodies */

/* Quoted-printable keeps mostly-ASCII text readable; when more than a third
 * of the bytes would need =XX (Cyrillic, CJK), base64 is smaller. */
static int put_text_entity(cmn_buf_t *out, const char *subtype, const char *body)
{
    size_t len = strlen(body), high = 0;
    for (size_t i = 0; i < len; i++)
        high += ((unsigned char)body[i] >= 0x80) ? 1 : 0;
    int b64 = high * 3 > len;
    int rc = cmn_buf_printf(out, "Content-Type: text/%s; charset=UTF-8\r\nContent-Transfer-Encoding: %s\r\n\r\n",
                            subtype, b64 ? "base64" : "quoted-printable");
    if (rc != 0)
        return rc;
    if (!b64)
        return email_mime_qp_encode(body, len, out);
    /* base64 carries bytes, so line breaks are normalised to CRLF first
     * (RFC 2046 4.1.1: text line breaks are CRLF in canonical form). */
    cmn_buf_t canon = CMN_BUF_INIT;
    for (size_t i = 0; rc == 0 && i < len; i++) {
        if (body[i] == '\r' || body[i] == '\n') {
            if (body[i] == '\r' && i + 1 < len && body[i + 1] == '\n')
                i++;
            rc = cmn_buf_puts(&canon, "\r\n");
        } else {
            rc = cmn_buf_putc(&canon, body[i]);
        }
    }
    if (rc == 0)
        rc = email_mime_base64_encode(canon.data, canon.len, out);
    cmn_buf_free(&canon);
    return rc;
}

/* The readable part: text alone, or multipart/alternative of text and HTML
 * (the plainer alternative first, RFC 2046 5.1.4). */
static int put_content_entity(cmn_buf_t *out, const email_mime_input_t *in)
{
    if (in->html == NULL)
        return put_text_entity(out, "plain", in->text);
    const char *b = in->boundary_token;
    int rc = cmn_buf_printf(out, "Content-Type: multipart/alternative;\r\n boundary=\"=_a_%s\"\r\n\r\n--=_a_%s\r\n", b, b);
    if (rc == 0)
        rc = put_text_entity(out, "plain", in->text);
    if (rc == 0)
        rc = cmn_buf_printf(out, "\r\n--=_a_%s\r\n", b);
    if (rc == 0)
        rc = put_text_entity(out, "html", in->html);
    if (rc == 0)
        rc = cmn_buf_printf(out, "\r\n--=_a_%s--", b);
    return rc;
}

/* RFC 2231 attribute-char: what may stay literal in an extended value. */
static int rfc2231_literal(unsigned char c)
{
    return is_mime_token_char(c) && c != '*' && c != '\'' && c != '%';
}

/* Appends ";\r\n attr=value" for a MIME parameter: a quoted string when the
 * value is short plain ASCII, otherwise RFC 2231 UTF-8 percent-encoding,
 * split into numbered continuations that keep each line within 78 columns. */
static int put_param(cmn_buf_t *out, const char *attr, const char *value)
{
    size_t len = strlen(value);
    int simple = len <= 60;
    for (size_t i = 0; simple && i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        simple = c >= 0x20 && c <= 0x7E && c != '"' && c != '\\';
    }
    if (simple)
        return cmn_buf_printf(out, ";\r\n %s=\"%s\"", attr, value);

    cmn_buf_t enc = CMN_BUF_INIT;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (rfc2231_literal(c)) {
            rc = cmn_buf_putc(&enc, (char)c);
        } else {
            char trip[3] = {'%', HEX[c >> 4], HEX[c & 15]};
            rc = cmn_buf_append(&enc, trip, 3);
        }
    }
    if (rc != 0)
        goto cleanup;
    size_t alen = strlen(attr);
    /* " attr*=UTF-8''" is alen + 10 columns. */
    if (1 + alen + 10 + enc.len <= HDR_COLS) {
        rc = cmn_buf_printf(out, ";\r\n %s*=UTF-8''%s", attr, enc.data);
        goto cleanup;
    }
    size_t pos = 0;
    for (int seg = 0; rc == 0 && pos < enc.len; seg++) {
        char prefix[96];
        int n = snprintf(prefix, sizeof prefix, " %s*%d*=%s", attr, seg, seg == 0 ? "UTF-8''" : "");
        if (n < 0 || (size_t)n >= sizeof prefix) {
            rc = CMN_ERR_OVERFLOW;
            break;
        }
        size_t room = HDR_COLS - 1 - (size_t)n; /* one column for the ';' */
        size_t take = enc.len - pos < room ? enc.len - pos : room;
        /* Never cut a %XX escape in two. */
        if (take < enc.len - pos) {
            if (take >= 1 && enc.data[pos + take - 1] == '%')
                take -= 1;
            else if (take >= 2 && enc.data[pos + take - 2] == '%')
                take -= 2;
        }
        rc = cmn_buf_printf(out, ";\r\n%s", prefix);
        if (rc == 0)
            rc = cmn_buf_append(out, enc.data + pos, take);
        pos += take;
    }
cleanup:
    cmn_buf_free(&enc);
    return rc;
}

static int put_attachment_entity(cmn_buf_t *out, const email_attachment_t *a)
{
    const char *ct = a->content_type != NULL ? a->content_type : "application/octet-stream";
    int rc = cmn_buf_printf(out, "Content-Type: %s", ct);
    if (rc == 0)
        rc = put_param(out, "name", a->filename);
    if (rc == 0)
        rc = cmn_buf_puts(out, "\r\nContent-Disposition: attachment");
    if (rc == 0)
        rc = put_param(out, "filename", a->filename);
    if (rc == 0)
        rc = cmn_buf_puts(out, "\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    if (rc == 0)
        rc = email_mime_base64_encode(a->data, a->len, out);
    return rc;
}

/* --------------------------------------------------------------- message */

/* A List-Unsubscribe URI (NULL is fine: none). It is written inside <>
 * as is, so it must not contain what would end it or the header: CR/LF
 * (header_injection), other controls, space, '<', '>' or ',' (the list
 * separator), nor exceed the line budget (invalid_header). */
static int check_unsubscribe_uri(const char *field, const char *uri, const char *scheme, email_mime_error_t *err)
{
    if (uri == NULL)
        return 0;
    if (strpbrk(uri, "\r\n") != NULL) {
        set_err(err, "header_injection", field, "contains CR or LF");
        return CMN_ERR_INVALID;
    }
    size_t n = strlen(uri);
    if (n > EMAIL_MIME_MAX_UNSUB_URI || strncasecmp(uri, scheme, strlen(scheme)) != 0) {
        set_err(err, "invalid_header", field, "is not a URI of the expected scheme and length");
        return CMN_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>' || c == ',') {
            set_err(err, "invalid_header", field, "contains a character not allowed in the header");
            return CMN_ERR_INVALID;
        }
    }
    return 0;
}

/* List-Unsubscribe with one URI per line (each may be long), and the
 * RFC 8058 one-click header when the URL is https. */
static int put_list_unsubscribe(cmn_buf_t *out, const email_mime_input_t *in)
{
    const char *url = in->unsubscribe_url;
    const char *mailto = in->unsubscribe_mailto;
    int rc = 0;
    if (url == NULL && mailto == NULL)
        return 0;
    if (url != NULL && mailto != NULL)
        rc = cmn_buf_printf(out, "List-Unsubscribe: <%s>,\r\n <%s>\r\n", url, mailto);
    else
        rc = cmn_buf_printf(out, "List-Unsubscribe: <%s>\r\n", url != NULL ? url : mailto);
    if (rc == 0 && url != NULL && strncasecmp(url, "https://", 8) == 0)
        rc = cmn_buf_puts(out, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
    return rc;
}

static int check_input(const email_mime_input_t *in, email_mime_error_t *err)
{
    if (in->from.addr == NULL || in->to.addr == NULL || in->subject == NULL || in->text == NULL ||
        in->id_token == NULL || in->boundary_token == NULL || (in->n_attachments > 0 && in->attachments == NULL)) {
        set_err(err, "invalid_input", "input", "lacks a required field");
        return CMN_ERR_INVALID;
    }
    if (!valid_token_chars(in->id_token, 1, 64, 1) || !valid_token_chars(in->boundary_token, 8, 40, 0)) {
        set_err(err, "invalid_input", "id_token or boundary_token", "has a bad form");
        return CMN_ERR_INVALID;
    }
    struct {
        const char *field, *value;
    } headers[] = {
        {"from name", in->from.name}, {"from address", in->from.addr}, {"to name", in->to.name},
        {"to address", in->to.addr},  {"subject", in->subject},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        rc = email_mime_check_header_value(headers[i].field, headers[i].value, err);
        if (rc != 0)
            return rc;
    }
    if (!email_mime_valid_address(in->from.addr)) {
        set_err(err, "invalid_address", "from address", "is not a valid address");
        return CMN_ERR_INVALID;
    }
    if (!email_mime_valid_address(in->to.addr)) {
        set_err(err, "invalid_address", "to address", "is not a valid address");
        return CMN_ERR_INVALID;
    }
    rc = check_unsubscribe_uri("List-Unsubscribe URL", in->unsubscribe_url, "http", err);
    if (rc == 0)
        rc = check_unsubscribe_uri("List-Unsubscribe mailto", in->unsubscribe_mailto, "mailto:", err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < in->n_attachments; i++) {
        const email_attachment_t *a = &in->attachments[i];
        rc = email_mime_check_header_value("attachment filename", a->filename, err);
        if (rc == 0)
            rc = email_mime_check_header_value("attachment content_type", a->content_type, err);
        if (rc != 0)
            return rc;
        if (a->filename == NULL || a->filename[0] == '\0' || strlen(a->filename) > EMAIL_MIME_MAX_FILENAME) {
            set_err(err, "invalid_attachment", "attachment filename", "is missing or longer than 255 bytes");
            return CMN_ERR_INVALID;
        }
        if (a->content_type != NULL && !valid_content_type(a->content_type)) {
            set_err(err, "invalid_attachment", "attachment content_type", "must be type/subtype");
            return CMN_ERR_INVALID;
        }
        if (a->data == NULL && a->len > 0) {
            set_err(err, "invalid_attachment", "attachment", "has no data");
            return CMN_ERR_INVALID;
        }
    }
    return 0;
}

int email_mime_build(const email_mime_input_t *in, cmn_buf_t *out, char msgid[EMAIL_MIME_MSGID_MAX],
                     email_mime_error_t *err)
{
    if (err != NULL) {
        err->code = NULL;
        err->detail[0] = '\0';
    }
    if (in == NULL || out == NULL || msgid == NULL) {
        set_err(err, "invalid_input", "input", "has a NULL argument");
        return CMN_ERR_INVALID;
    }
    int rc = check_input(in, err);
    if (rc != 0)
        return rc;

    char date[64];
    rc = email_mime_format_date(in->date_ms, date, sizeof date);
    if (rc != 0) {
        set_err(err, "invalid_input", "date", "is out of range");
        return CMN_ERR_INVALID;
    }
    /* The Message-ID's right side is the sender's domain (RFC 5322 3.6.4
     * asks for something unique to the host; the domain we send for is). */
    const char *domain = strchr(in->from.addr, '@') + 1;
    int n = snprintf(msgid, EMAIL_MIME_MSGID_MAX, "<%s@%s>", in->id_token, domain);
    if (n < 0 || n >= EMAIL_MIME_MSGID_MAX) {
        set_err(err, "invalid_input", "Message-ID", "is too long");
        return CMN_ERR_INVALID;
    }

    rc = cmn_buf_printf(out, "Date: %s\r\n", date);
    if (rc == 0)
        rc = email_mime_put_mailbox(out, "From", &in->from);
    if (rc == 0)
        rc = email_mime_put_mailbox(out, "To", &in->to);
    if (rc == 0)
        rc = email_mime_put_unstructured(out, "Subject", in->subject);
    if (rc == 0)
        rc = cmn_buf_printf(out, "Message-ID: %s\r\n", msgid);
    if (rc == 0)
        rc = put_list_unsubscribe(out, in);
    if (rc == 0)
        rc = cmn_buf_puts(out, "MIME-Version: 1.0\r\n");
    if (rc != 0)
        goto cleanup;

    if (in->n_attachments == 0) {
        rc = put_content_entity(out, in);
    } else {
        const char *b = in->boundary_token;
        rc = cmn_buf_printf(out, "Content-Type: multipart/mixed;\r\n boundary=\"=_m_%s\"\r\n\r\n--=_m_%s\r\n", b, b);
        if (rc == 0)
            rc = put_content_entity(out, in);
        for (size_t i = 0; rc == 0 && i < in->n_attachments; i++) {
            rc = cmn_buf_printf(out, "\r\n--=_m_%s\r\n", b);
            if (rc == 0)
                rc = put_attachment_entity(out, &in->attachments[i]);
        }
        if (rc == 0)
            rc = cmn_buf_printf(out, "\r\n--=_m_%s--", b);
    }
    /* SMTP DATA must end with CRLF before the final ".". */
    if (rc == 0 && (out->len < 2 || out->data[out->len - 2] != '\r' || out->data[out->len - 1] != '\n'))
        rc = cmn_buf_puts(out, "\r\n");
cleanup:
    if (rc != 0 && err != NULL && err->code == NULL)
        set_err(err, "invalid_input", "message build failed:", cmn_strerror(rc));
    return rc;
}
