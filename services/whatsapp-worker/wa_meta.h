/* wa_meta.h - the WhatsApp Cloud API (Meta Graph API) request and response
 * of one message.
 *
 *   POST {WHATSAPP_API_URL}/{WHATSAPP_API_VERSION}/{WHATSAPP_PHONE_NUMBER_ID}/messages
 *   Authorization: Bearer {WHATSAPP_ACCESS_TOKEN}
 *   Content-Type: application/json
 *
 * Bodies have exactly the shapes of Meta's official request examples
 * (shared/oracles/meta/cloud_api_examples.json, "Send Text Message",
 * "Send Message Template Text/Media/Interactive", "Send Image Message by
 * URL", "Send Document Message by URL", "Send Reply Button", "Send List
 * Message"; tests/unit/test_wa_meta.c compares them structurally), plus
 * biz_opaque_callback_data, which Meta echoes in every status webhook of the
 * message: it carries the communication id, so the webhook receiver needs
 * no lookup to attribute a delivery or read receipt.
 *
 *   {"messaging_product":"whatsapp","recipient_type":"individual","to":"14155550100",
 *    "type":"text","text":{"body":"...","preview_url":false},
 *    "biz_opaque_callback_data":"<communication_id>"}
 *
 * Success: HTTP 200 {"messaging_product":"whatsapp","contacts":[{"input","wa_id"}],
 * "messages":[{"id":"wamid....","message_status":"accepted"?}]}.
 * Failure: the Graph error envelope {"error":{"message","type","code",
 * "error_subcode"?,"error_data"?:{"messaging_product","details"},"fbtrace_id",
 * "is_transient"?}} with a 4xx/5xx status, classified by
 * cmn_provider_classify_meta (crm/provider_errors.h).
 *
 * Everything here is pure. */
#ifndef WA_META_H
#define WA_META_H

#include <stddef.h>

#include "crm/buf.h"
#include "wa_content.h"
#include "wa_templates.h"

/* Meta's limit on biz_opaque_callback_data. */
#define WA_META_OPAQUE_MAX 512
#define WA_META_TEXT_MAX 400

/* One message. Every pointer is borrowed for the call. */
typedef struct wa_meta_msg {
    const char *to;                 /* the recipient's number, digits only (E.164 without '+') */
    const char *biz_opaque;         /* the communication id; NULL or "" leaves the member out */
    /* attempt > 0: biz_opaque_callback_data is "<biz_opaque>:<hop>:<attempt>",
     * which the webhook receiver reads, so a receipt names the exact hop it
     * belongs to (receipt-driven fallback watches that hop). */
    int hop, attempt;
    const wa_tpl_call_t *tpl;       /* non-NULL: send this template (content and text ignored) */
    const wa_content_t *content;    /* free-form: what to send (kind TEMPLATE is not free-form) */
    const char *text;               /* free-form: the rendered text (body, or default caption) */
} wa_meta_msg_t;

/* Writes the JSON body of m into out (reset first). Returns 0,
 * CMN_ERR_INVALID with the reason in errstr (empty or too long text or
 * caption, a `to` that is not 1-15 digits, a content kind that cannot be
 * sent free-form), or CMN_ERR_NOMEM. */
int wa_meta_body(const wa_meta_msg_t *m, cmn_buf_t *out, char *errstr, size_t errlen);

/* Writes api_base + "/" + version + "/" + phone_number_id + "/messages" into
 * out (reset first); trailing slashes of api_base are dropped. Returns 0,
 * CMN_ERR_INVALID (api_base not http(s), version not "v" + digits and dots,
 * phone_number_id not digits) or CMN_ERR_NOMEM. */
int wa_meta_url(const char *api_base, const char *version, const char *phone_number_id, cmn_buf_t *out);

/* 1 when s is a Graph API version like v23.0. */
int wa_meta_valid_version(const char *s);

/* The message id (wamid) of a success body into id (NUL-terminated), and
 * messages[0].message_status into status ("" when absent). Returns 0, or
 * CMN_ERR_PARSE when the body is not a JSON object with messages[0].id. */
int wa_meta_parse_success(const char *body, size_t len, char *id, size_t idlen, char *status, size_t statuslen);

typedef struct wa_meta_error {
    long code;                       /* error.code; 0 when absent */
    long subcode;                    /* error.error_subcode; 0 when absent */
    int is_transient;                /* error.is_transient */
    char type[64];                   /* error.type, e.g. "OAuthException" */
    char message[WA_META_TEXT_MAX];  /* error.message, phone numbers redacted */
    char details[WA_META_TEXT_MAX];  /* error.error_data.details, phone numbers redacted */
    char fbtrace_id[64];
} wa_meta_error_t;

/* Parses a Graph error body. Returns 0 when it is {"error":{...}} with a
 * code or a message, else CMN_ERR_PARSE; out is zeroed first either way. */
int wa_meta_parse_error(const char *body, size_t len, wa_meta_error_t *out);

/* Replaces, in place, every run that looks like a phone number (an optional
 * '+', then at least 7 digits, possibly grouped by blanks, '-', '.', '(' or
 * ')') by "<phone>". Error codes (up to 6 digits) stay readable. Provider
 * texts can quote the recipient's number, and they end up in status events
 * and logs. The string never grows. */
void wa_redact_numbers(char *s);

#endif
