/* email_mime.h - builds RFC 5322 / MIME messages (pure: no I/O, no clock, no
 * random numbers; the caller passes the date, the Message-ID token and the
 * boundary token so the output is reproducible in tests).
 *
 * Shape of a message:
 *   Date, From (display name quoted or RFC 2047-encoded), To, Subject (raw
 *   ASCII folded at spaces, or RFC 2047 encoded words of at most 75 chars),
 *   Message-ID <token@from-domain>, List-Unsubscribe and
 *   List-Unsubscribe-Post when given, MIME-Version, then
 *     text only:               text/plain; charset=UTF-8
 *     text + HTML:             multipart/alternative (text/plain, text/html)
 *     with attachments:        multipart/mixed (the body above, then each
 *                              attachment in base64, filename per RFC 2231
 *                              when it is not plain ASCII)
 * Bodies use quoted-printable, or base64 when most of the text is non-ASCII.
 * Every line ends in CRLF and no line is longer than 998 octets (header lines
 * stay within 78 except an address continuation line).
 *
 * Header values that come from user data (names, addresses, subject,
 * filenames, attachment content types) are never "cleaned": a CR or LF in any
 * of them is a header-injection attempt and the build fails, so nothing is
 * sent that the sender did not mean to send. */
#ifndef EMAIL_MIME_H
#define EMAIL_MIME_H

#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"

/* RFC 5322 2.1.1: the hard limit on a line, CRLF excluded. */
#define EMAIL_MIME_MAX_LINE 998
/* RFC 2047 2: an encoded word is at most 75 characters. */
#define EMAIL_MIME_MAX_ENCODED_WORD 75
/* Room for "<" + 36-char token + "@" + 253-char domain + ">" + NUL. */
#define EMAIL_MIME_MSGID_MAX 300
/* Longest List-Unsubscribe URI: "List-Unsubscribe: <" + URI + ">," stays
 * within the 998-octet line limit. */
#define EMAIL_MIME_MAX_UNSUB_URI 900
/* Filenames longer than this (in bytes) are refused. */
#define EMAIL_MIME_MAX_FILENAME 255

/* Why a build failed. code is a static string, one of:
 *   "header_injection"   a CR or LF in a header value taken from user data
 *   "invalid_header"     another control character or invalid UTF-8 in a header value
 *   "invalid_address"    a From/To address that is not a plain ASCII addr-spec
 *   "invalid_attachment" a bad filename, content type or missing data
 *   "invalid_input"      a missing required field or a bad token (caller bug)
 * detail names the field ("subject contains CR or LF"); it never contains
 * the offending value, because values are personal data. */
typedef struct email_mime_error {
    const char *code;
    char detail[160];
} email_mime_error_t;

typedef struct email_address {
    const char *name; /* display name, UTF-8; NULL or "" for none (borrowed) */
    const char *addr; /* addr-spec, ASCII, e.g. "ana@example.com" (borrowed) */
} email_address_t;

typedef struct email_attachment {
    const char *filename;      /* UTF-8, required (borrowed) */
    const char *content_type;  /* "type/subtype" without parameters; NULL: application/octet-stream */
    const unsigned char *data; /* decoded bytes (borrowed); may be NULL when len is 0 */
    size_t len;
} email_attachment_t;

typedef struct email_mime_input {
    email_address_t from;
    email_address_t to;
    const char *subject;        /* UTF-8, required (may be "") */
    const char *text;           /* UTF-8 plain-text body, required */
    const char *html;           /* UTF-8 HTML body, or NULL for a text-only message */
    const email_attachment_t *attachments; /* n_attachments entries, or NULL */
    size_t n_attachments;
    int64_t date_ms;            /* the Date header, epoch milliseconds */
    const char *id_token;       /* left part of the Message-ID: 1..64 chars of [A-Za-z0-9-] (a UUID) */
    const char *boundary_token; /* 8..40 chars of [A-Za-z0-9], random per message */
    /* List-Unsubscribe (RFC 2369) URIs, both optional (NULL: left out;
     * borrowed): an http(s) URL of the unsubscribe endpoint and a mailto:
     * URI. Each is printable ASCII without space, '<', '>' or ',' and at
     * most EMAIL_MIME_MAX_UNSUB_URI bytes. When the URL is https,
     * List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058, which
     * requires an HTTPS URI for one-click) follows. */
    const char *unsubscribe_url;
    const char *unsubscribe_mailto;
} email_mime_input_t;

/* Builds the whole message into out (appended; the caller owns out). Writes
 * the Message-ID header value, angle brackets included, into msgid.
 * Returns 0, or CMN_ERR_INVALID with err filled (out then holds a partial
 * message the caller discards), or CMN_ERR_NOMEM. */
int email_mime_build(const email_mime_input_t *in, cmn_buf_t *out, char msgid[EMAIL_MIME_MSGID_MAX],
                     email_mime_error_t *err);

/* ------------------------------------------------------------------
 * The building blocks, exposed for unit tests and for other channels. */

/* 1 when addr is an addr-spec we send to: a dot-atom local part (at most 64
 * chars) "@" a host name of letters, digits and hyphens in dot-separated
 * labels, 254 chars at most. Deliberately narrower than RFC 5322: no quoted
 * local parts, no address literals, no spaces, no <>()[],;:\" characters, so
 * an address can never break out of a header or an SMTP command. */
int email_mime_valid_address(const char *addr);

/* Appends "Name: value\r\n" where value is encoded for a header: written as
 * is when it is printable ASCII (folded at spaces to 78 columns), otherwise
 * as RFC 2047 UTF-8 encoded words (Q or B, whichever is shorter) of at most
 * 75 characters, one per line, never splitting a UTF-8 character. The value
 * must already be checked (no CR/LF, valid UTF-8). */
int email_mime_put_unstructured(cmn_buf_t *out, const char *name, const char *value);

/* Appends "Name: <mailbox>\r\n" for a From/To header: the display name as
 * a quoted string when it is short printable ASCII; otherwise its plain
 * words as they are and each run of other words as RFC 2047 encoded words.
 * The name must already be checked (no CR/LF, valid UTF-8). */
int email_mime_put_mailbox(cmn_buf_t *out, const char *name, const email_address_t *a);

/* Quoted-printable (RFC 2045 6.7) of len bytes: any line break in the input
 * (CRLF, LF or a lone CR) becomes CRLF; output lines are at most 76 chars. */
int email_mime_qp_encode(const char *in, size_t len, cmn_buf_t *out);

/* Base64 with CRLF after every 76 characters and at the end (when len > 0). */
int email_mime_base64_encode(const void *in, size_t len, cmn_buf_t *out);

/* Decodes standard base64 (whitespace ignored, padding optional at the end).
 * *out is malloc'd (caller frees), *out_len its length. Returns 0,
 * CMN_ERR_PARSE on a bad character or length, CMN_ERR_OVERFLOW when the
 * decoded size would exceed max_len, or CMN_ERR_NOMEM. */
int email_mime_base64_decode(const char *in, size_t in_len, size_t max_len, unsigned char **out,
                             size_t *out_len);

/* Formats epoch ms as an RFC 5322 date in UTC: "Sun, 22 Nov 2026 01:02:03 +0000". */
int email_mime_format_date(int64_t epoch_ms, char *out, size_t outlen);

/* Checks a header value from user data: 0 when fine, else fills err
 * ("header_injection" for CR/LF, "invalid_header" otherwise) naming field. */
int email_mime_check_header_value(const char *field, const char *value, email_mime_error_t *err);

#endif
