/* wh_form.h - application/x-www-form-urlencoded bodies and query strings.
 *
 * Twilio posts its webhooks as forms and signs the decoded name/value
 * pairs, so the receiver needs every pair, in order, repeated names kept.
 * Pure: no I/O. */
#ifndef WH_FORM_H
#define WH_FORM_H

#include <stddef.h>

#include "crm/buf.h"

/* A form with more pairs than this is refused: Twilio's richest webhook
 * (an inbound MMS with ten media) has about 50. */
#define WH_FORM_MAX_PAIRS 256

typedef struct wh_form_pair {
    char *name;  /* owned, decoded, NUL-terminated */
    char *value; /* owned, decoded ("" for "name" or "name=") */
} wh_form_pair_t;

typedef struct wh_form {
    wh_form_pair_t *pairs; /* owned */
    size_t n;
} wh_form_t;

/* Decodes data[0..len) ('+' is a space, %XX a byte) into *out, which must
 * be zeroed. Empty segments ("a=1&&b=2") are skipped. Returns 0,
 * CMN_ERR_INVALID (a bad %-escape, a decoded NUL, or more than
 * WH_FORM_MAX_PAIRS pairs) or CMN_ERR_NOMEM; *out is cleared on error. */
int wh_form_parse(const char *data, size_t len, wh_form_t *out);

/* The value of the first pair called name (borrowed), or NULL. */
const char *wh_form_get(const wh_form_t *f, const char *name);

/* Appends a copy of the pair name=value (value NULL means ""). Returns 0,
 * CMN_ERR_INVALID (NULL name or WH_FORM_MAX_PAIRS reached) or
 * CMN_ERR_NOMEM. */
int wh_form_add(wh_form_t *f, const char *name, const char *value);

/* Frees every pair and zeroes *f. NULL is fine. */
void wh_form_clear(wh_form_t *f);

/* Appends s percent-encoded for a URL query: RFC 3986 unreserved bytes
 * (A-Z a-z 0-9 - . _ ~) as they are, every other byte as %XX (upper-case
 * hex). Returns 0 or CMN_ERR_NOMEM. */
int wh_form_encode(cmn_buf_t *out, const char *s);

#endif
