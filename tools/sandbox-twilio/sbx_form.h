/* sbx_form.h - strict application/x-www-form-urlencoded decoding for the
 * Twilio sandbox.
 *
 * A body is name=value pairs joined by '&'; '+' is a space and %XX a byte.
 * The sandbox is a test oracle for our own client, so it is stricter than a
 * browser-facing parser: a malformed escape, an empty name, a decoded NUL
 * byte or text that is not UTF-8 is an error rather than being guessed at.
 * Pure. */
#ifndef SBX_FORM_H
#define SBX_FORM_H

#include <stddef.h>

typedef struct sbx_pair {
    char *name;  /* owned, decoded, NUL-terminated */
    char *value; /* owned, decoded, NUL-terminated */
} sbx_pair_t;

typedef struct sbx_form {
    sbx_pair_t *pairs; /* owned, in body order (repeated names kept) */
    size_t n;
} sbx_form_t;

/* Decodes len bytes of body into out (zeroed by the caller). Returns 0, or
 * CMN_ERR_PARSE with a one-line reason in errstr (out is then empty), or
 * CMN_ERR_NOMEM. Call sbx_form_clear() in every case. */
int sbx_form_parse(const char *body, size_t len, sbx_form_t *out, char *errstr, size_t errlen);

/* The first value of name, or NULL (borrowed from f). */
const char *sbx_form_get(const sbx_form_t *f, const char *name);

/* How many pairs are called name. */
size_t sbx_form_count(const sbx_form_t *f, const char *name);

void sbx_form_clear(sbx_form_t *f);

/* 1 when the len bytes of s are well-formed UTF-8 (no overlongs, no
 * surrogates, nothing above U+10FFFF). */
int sbx_utf8_valid(const char *s, size_t len);

/* Unicode code points in the NUL-terminated UTF-8 string s. */
size_t sbx_utf8_length(const char *s);

#endif
