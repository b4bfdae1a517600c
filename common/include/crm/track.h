/* track.h - signed tokens for email open, click and unsubscribe links.
 *
 * The email worker puts a token into every tracking URL it writes (the open
 * pixel, each rewritten link, the List-Unsubscribe URIs and the visible
 * unsubscribe link); the webhook receiver parses it back when the URL is
 * fetched. The token carries everything the receiver needs to emit an event
 * (tenant, client, communication, hop, channel), so the receiver keeps no
 * state, and for a click the original target URL, so the redirect can only
 * ever go where the email's author pointed: the receiver never takes a
 * target from the query string (no open redirect).
 *
 * Token text: base64url (RFC 4648 section 5) without padding, of the bytes
 *
 *   off  size  field
 *   0    1     version, 1 (CMN_TRACK_VERSION)
 *   1    1     kind: 1 open, 2 click, 3 unsubscribe
 *   2    1     channel: 0 email, 1 sms, 2 whatsapp (cmn_channel_t)
 *   3    1     hop + 1, 0 when absent
 *   4    16    communication_id, the UUID's 16 bytes
 *   20   4     expires_at, big-endian epoch seconds, 0 = never
 *   24   1+n   tenant_id: length 1..128, then the bytes
 *   ..   1+n   client_id: length 1..128, then the bytes
 *   click only:
 *   ..   2     link index + 1, big-endian, 0 when absent
 *   ..   2+n   target: big-endian length 1..CMN_TRACK_TARGET_MAX, then the bytes
 *   end  16    MAC: the first 16 bytes of HMAC-SHA256(K, every byte before it),
 *              K = HMAC-SHA256(CRM_TRACKING_KEY, "crm tracking token v1")
 *
 * The MAC is truncated to 128 bits (RFC 2104 section 5 allows half the hash
 * length) to keep URLs short; it is compared in constant time. K is derived
 * from the key so that a deployment which reuses one secret for two purposes
 * never signs tokens with the raw secret. The decoder is strict: padding,
 * characters outside the alphabet, non-zero unused trailing bits, unknown
 * kinds, ids that fail validation and trailing bytes are all rejected, so
 * each token has exactly one text and changing any character of it makes the
 * token invalid.
 *
 * Expiry: the format carries an optional expiry, but the email worker issues
 * every token without one. An unsubscribe link must keep working long after
 * the email was sent (RFC 8058 and CAN-SPAM: at least 30 days; people
 * unsubscribe from old mail), and a click link that expires breaks the
 * email's content for its reader. A token is revoked by rotating the key.
 *
 * Key rotation: the version byte identifies the format; a key change keeps
 * the format. To rotate, the receiver parses with the new key and, when the
 * reason is CMN_TRACK_R_SIGNATURE, once more with the previous key.
 *
 * Everything here is pure (no clock, no I/O, no state): callers pass now. */
#ifndef CRM_TRACK_H
#define CRM_TRACK_H

#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/channel.h"
#include "crm/request.h"
#include "crm/uuid.h"

#define CMN_TRACK_VERSION 1
#define CMN_TRACK_KEY_MIN 32       /* shortest CRM_TRACKING_KEY accepted */
#define CMN_TRACK_MAC_LEN 16
#define CMN_TRACK_TARGET_MAX 2048  /* longest click target in bytes */
#define CMN_TRACK_HOP_MAX 254
#define CMN_TRACK_LINK_MAX 65534
/* Longest token text (NUL excluded): the base64url of the largest token. */
#define CMN_TRACK_TOKEN_MAX 3200

typedef enum cmn_track_kind {
    CMN_TRACK_OPEN = 1,        /* the open pixel: GET /t/o/<token> */
    CMN_TRACK_CLICK = 2,       /* a tracked link: GET /t/c/<token> */
    CMN_TRACK_UNSUBSCRIBE = 3  /* GET (page) and POST (one-click) /u/<token> */
} cmn_track_kind_t;

/* Why a token was refused. */
typedef enum cmn_track_reason {
    CMN_TRACK_R_OK = 0,
    CMN_TRACK_R_MALFORMED, /* empty, overlong, not strict base64url, or bytes that do not decode */
    CMN_TRACK_R_VERSION,   /* an unknown version byte (a token from a newer format) */
    CMN_TRACK_R_SIGNATURE, /* the MAC does not match: forged, altered or signed with another key */
    CMN_TRACK_R_KIND,      /* a valid token of another kind than the endpoint serves */
    CMN_TRACK_R_EXPIRED    /* a valid token past its expires_at */
} cmn_track_reason_t;

typedef struct cmn_track_token {
    cmn_track_kind_t kind;
    cmn_channel_t channel;                       /* CMN_CHANNEL_EMAIL for email */
    char tenant_id[CMN_REQ_MAX_ID + 1];          /* cmn_valid_id, 1..128 */
    char client_id[CMN_REQ_MAX_ID + 1];          /* cmn_valid_id, 1..128 */
    char communication_id[CMN_UUID_STR_LEN + 1]; /* canonical lower-case UUID */
    int hop;                                     /* -1 when absent, else 0..CMN_TRACK_HOP_MAX */
    int64_t expires_at_s;                        /* epoch seconds, 0 = never */
    /* Click only (ignored and cleared for the other kinds): */
    int link_index;                              /* -1 when absent, else 0..CMN_TRACK_LINK_MAX */
    char target[CMN_TRACK_TARGET_MAX + 1];       /* the original URL, see cmn_track_target_ok */
} cmn_track_token_t;

/* Clears *t to "no fields": kind OPEN, channel EMAIL, hop and link_index -1,
 * empty strings, no expiry. */
void cmn_track_token_init(cmn_track_token_t *t);

/* 1 when url may be a click target: "http://" or "https://" (scheme in any
 * case) followed by at least one byte, at most CMN_TRACK_TARGET_MAX bytes,
 * every byte printable ASCII without space (0x21..0x7E). Such a URL can go
 * into a Location header as is: it cannot carry CR, LF or a space. */
int cmn_track_target_ok(const char *url);

/* Signs t with key (>= CMN_TRACK_KEY_MIN characters) and appends the token
 * text to out (caller owns out; NUL-terminated by cmn_buf). Returns 0,
 * CMN_ERR_INVALID when the key is short or a field is out of range (invalid
 * id, bad UUID, hop, link index, expiry beyond 2106, a click without a valid
 * target), or CMN_ERR_NOMEM. Nothing is appended on error. */
int cmn_track_token_make(const char *key, const cmn_track_token_t *t, cmn_buf_t *out);

/* Parses and verifies a token text (NUL-terminated, borrowed) into *out:
 * strict decoding, version, MAC (constant time), then the fields, then that
 * its kind is `expect` and, when it has an expiry, that now_s is before it.
 * Returns 0, or CMN_ERR_INVALID with *reason set (reason may be NULL); on
 * error *out holds nothing usable. */
int cmn_track_token_parse(const char *key, const char *text, cmn_track_kind_t expect, int64_t now_s,
                          cmn_track_token_t *out, cmn_track_reason_t *reason);

/* A static lower-case name for a reason ("malformed", "bad_signature",
 * ...), fit for logs and problem details. Never NULL. */
const char *cmn_track_reason_str(cmn_track_reason_t r);

/* Appends the tracking URL of a token to out: base + "/t/o/" (open),
 * "/t/c/" (click) or "/u/" (unsubscribe) + token. base is the receiver's
 * public base URL ("https://hooks.example.com", optionally with a path
 * prefix; trailing slashes are ignored) and must start with http:// or
 * https://. Returns 0, CMN_ERR_INVALID or CMN_ERR_NOMEM; nothing appended on
 * error. */
int cmn_track_url(const char *base, cmn_track_kind_t kind, const char *token, cmn_buf_t *out);

/* cmn_track_token_make + cmn_track_url: the signed URL of t. Same returns. */
int cmn_track_link(const char *key, const char *base, const cmn_track_token_t *t, cmn_buf_t *out);

/* Appends "mailto:<address>?subject=unsubscribe-<token>" to out. address
 * must be a plain local@domain of printable ASCII without '?', '%', '&', '<'
 * or '>' (no escaping needed in the URI). Returns 0, CMN_ERR_INVALID or
 * CMN_ERR_NOMEM. */
int cmn_track_mailto(const char *address, const char *token, cmn_buf_t *out);

/* 1 when an application/x-www-form-urlencoded body (len bytes, need not be
 * NUL-terminated) holds the pair List-Unsubscribe=One-Click that RFC 8058
 * requires of a one-click POST (exact name and value after
 * percent-decoding, '+' as space, any position among other pairs); else 0. */
int cmn_track_one_click_form(const char *body, size_t len);

/* The open pixel the receiver answers with: a 1x1 transparent GIF. */
extern const unsigned char CMN_TRACK_PIXEL_GIF[];
extern const size_t CMN_TRACK_PIXEL_GIF_LEN;

/* Rewriting an HTML body for tracking. */
typedef struct cmn_track_html {
    const char *key;               /* CRM_TRACKING_KEY */
    const char *base_url;          /* TRACKING_BASE_URL, as for cmn_track_url */
    /* tenant_id, client_id, communication_id, channel, hop and expires_at_s
     * are copied into every token; kind, link_index and target are set
     * per token. Borrowed. */
    const cmn_track_token_t *ids;
    int track_opens;               /* append the open pixel */
    int track_clicks;              /* rewrite links */
} cmn_track_html_t;

/* Appends html[0..len) to out with:
 *   - each <a ... href="http(s)://..."> (tag and attribute names in any case,
 *     value double-, single- or un-quoted) rewritten to the click URL of the
 *     link's target, which is the attribute value with HTML character
 *     references decoded (&amp; -> &) and surrounding white space removed;
 *     link indexes count the rewritten links from 0 in document order;
 *   - when track_opens, <img src="<open URL>" width="1" height="1" alt=""
 *     style="..."> inserted before the last </body>, or at the end without
 *     one.
 * Left untouched: mailto:, tel:, fragments (#...), relative URLs, every
 * other scheme, links into the receiver itself (base + "/u/" or "/t/", such
 * as the visible unsubscribe link), targets cmn_track_target_ok refuses
 * (too long, space, non-ASCII), anything inside <!-- comments -->, and
 * links whose tag has a data-crm-notrack attribute (a template's opt-out,
 * for links such as password resets that should not pass a redirector).
 * *links (may be NULL) gets the number of rewritten links. Returns 0,
 * CMN_ERR_INVALID (bad options) or CMN_ERR_NOMEM; on error out may hold a
 * partial copy (callers reset it). */
int cmn_track_html_rewrite(const cmn_track_html_t *o, const char *html, size_t len, cmn_buf_t *out, int *links);

#endif
