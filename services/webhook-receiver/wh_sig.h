/* wh_sig.h - webhook signatures: Twilio's X-Twilio-Signature and Meta's
 * X-Hub-Signature-256, checked the way the providers' own SDKs check them.
 *
 * Twilio (twilio-python RequestValidator and its siblings):
 *   signature = base64(HMAC-SHA1(auth_token, url + name1 + value1 + ...))
 *   over the full URL Twilio requested (scheme, host, path and query) and
 *   the POSTed form parameters sorted by name, then by value (repeated
 *   names contribute every distinct value). A request is valid when the
 *   signature matches the URL with its port removed OR with the scheme's
 *   default port added (Twilio signs what it was given, and deployments
 *   configure either). When the URL's query holds bodySHA256 (JSON
 *   webhooks), the body is not a form: the signature covers the URL alone
 *   and bodySHA256 must equal the lower-case hex SHA-256 of the raw body.
 * Meta: X-Hub-Signature-256: "sha256=" + hex(HMAC-SHA256(app_secret, raw body)).
 *
 * Every comparison of a secret-derived value is constant-time
 * (CRYPTO_memcmp). Pure: no I/O, no state. */
#ifndef WH_SIG_H
#define WH_SIG_H

#include <stddef.h>

#include "wh_form.h"

#define WH_SIG_TWILIO_LEN 28 /* base64 of 20 bytes */

/* The signature of url plus params (NULL: no parameters) into out.
 * Returns 0, CMN_ERR_INVALID (NULL or empty token/url) or CMN_ERR_NOMEM. */
int wh_sig_twilio_compute(const char *auth_token, const char *url, const wh_form_t *params,
                          char out[WH_SIG_TWILIO_LEN + 1]);

/* 1 when signature (the X-Twilio-Signature header, borrowed) is valid for
 * url and the request: params is the decoded form body (NULL or empty for
 * none); body/body_len the raw body, used only by the bodySHA256 variant.
 * 0 for anything else, a missing signature and internal errors included. */
int wh_sig_twilio_valid(const char *auth_token, const char *url, const wh_form_t *params, const char *body,
                        size_t body_len, const char *signature);

/* The two URLs Twilio's SDKs try: url with its explicit port removed and
 * with the scheme's default port (443 for https, 80 for http) added when it
 * has none. Both appended to the given buffers (reset first). Returns 0 or
 * CMN_ERR_INVALID (not an http(s) URL). */
int wh_sig_url_variants(const char *url, cmn_buf_t *without_port, cmn_buf_t *with_port);

/* 1 when header ("sha256=<64 hex>", borrowed) is the HMAC-SHA256 of
 * body[0..len) with app_secret; 0 otherwise (also for NULL or malformed). */
int wh_sig_meta_valid(const char *app_secret, const char *body, size_t len, const char *header);

/* 1 when a and b are equal strings, in time independent of where they
 * differ (their lengths are not secret). NULL never matches. */
int wh_sig_equal(const char *a, const char *b);

#endif
