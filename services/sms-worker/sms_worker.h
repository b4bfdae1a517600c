/* sms_worker.h - the SMS channel of the worker core (crm/worker.h):
 * configuration, and the cmn_worker_channel_t that turns a Dispatch into a
 * Twilio Messages API request.
 *
 * prepare:  check the number (crm/phone.h): invalid -> failed
 *           "invalid_number", fixed line -> failed "landline", any other
 *           type that cannot receive SMS -> failed "not_mobile", all
 *           permanent and without contacting Twilio; render
 *           templates/<type>/<locale>/sms.txt.mustache; measure it
 *           (crm/sms.h: GSM-7 or UCS-2, segments) into the events'
 *           details; refuse a body over the 1,600 limit ("body_too_long");
 *           read the MMS media URLs from context.media_urls; build the form
 *           body (sms_request.h) with the StatusCallback of this attempt;
 * sender:   the From number, else the Messaging Service SID (the rate-limit
 *           key: Twilio limits each sender, not the account);
 * submit:   an HTTPS POST with basic auth;
 * classify: 201 -> sent with the message sid (SM...); otherwise the HTTP
 *           status and Twilio's error code through
 *           cmn_provider_classify_twilio: retryable (429, 5xx, network)
 *           or permanent (21610 unsubscribed, 21211 invalid number, ...).
 *
 * Status mapping (see docs/sms.md): provider "twilio"; provider_message_id
 * is the Twilio sid on sent; failed carries error_code (Twilio's code such
 * as "21610", or ours such as "landline" or "http_502") and error_message
 * (phone numbers redacted), "retryable: " first when a later attempt may
 * succeed; sending, sent and failed carry details {"encoding","segments",
 * "characters","units"} once the body is rendered. */
#ifndef SMS_WORKER_H
#define SMS_WORKER_H

#include <stddef.h>

#include "crm/config.h"
#include "crm/log.h"
#include "crm/worker.h"

/* The template file of the SMS channel inside each locale directory. */
#define SMS_TEMPLATE_FILE "sms.txt.mustache"

/* Every setting of crm-sms-worker, filled by cmn_config_load() from the
 * table returned by sms_worker_config_table(). */
typedef struct sms_worker_config {
    char *kafka_brokers;
    char *http_bind;
    long http_port;
    char *log_level;
    char *twilio_api_url;
    char *twilio_account_sid;
    char *twilio_auth_token;
    char *twilio_phone_number;
    char *twilio_messaging_service_sid;
    char *twilio_ca_file;
    long twilio_timeout_ms;
    char *status_callback_url;
    char *templates_dir;
    char *fallback_locale;
    double rate_per_second;
    long rate_burst;
    long max_in_flight;
    long batch_size;
    char *group_id;
    long session_timeout_ms;
    long retry_max_attempts;
    long retry_base_ms;
    long retry_cap_ms;
    int receipt_fallback;             /* RECEIPT_FALLBACK */
    long receipt_deadline_critical_ms; /* RECEIPT_DEADLINE_CRITICAL_MS */
    long receipt_deadline_high_ms;     /* RECEIPT_DEADLINE_HIGH_MS */
    long receipt_deadline_normal_ms;   /* RECEIPT_DEADLINE_NORMAL_MS */
    long receipt_deadline_low_ms;      /* RECEIPT_DEADLINE_LOW_MS */
    long receipt_check_interval_ms;    /* RECEIPT_CHECK_INTERVAL_MS */
    long receipt_max_wait_ms;          /* RECEIPT_MAX_WAIT_MS */
} sms_worker_config_t;

/* The static table; its length in *n. */
const cmn_cfg_entry_t *sms_worker_config_table(size_t *n);

/* Checks what the table cannot: the SIDs' shapes, a sender (From number or
 * Messaging Service), the URLs, the fallback locale. Returns 0 or
 * CMN_ERR_CONFIG with one "VARIABLE: reason" line in errstr. */
int sms_worker_config_check(const sms_worker_config_t *cfg, char *errstr, size_t errlen);

/* 1 when s can be a Twilio From: an E.164 number, a short code (5 or 6
 * digits) or an alphanumeric sender id (1 to 11 letters, digits and
 * spaces, at least one letter). */
int sms_valid_sender(const char *s);

typedef struct sms_channel sms_channel_t;

/* Opens the templates and builds the Messages URL. cfg and log are
 * borrowed and must outlive the channel. NULL with the reason in errstr. */
sms_channel_t *sms_channel_new(const sms_worker_config_t *cfg, const cmn_log_t *log, char *errstr, size_t errlen);
/* NULL is a no-op. */
void sms_channel_destroy(sms_channel_t *c);

/* Fills ch with the SMS vtable bound to c (c must outlive ch's use). */
void sms_channel_bind(sms_channel_t *c, cmn_worker_channel_t *ch);

/* The classification of one finished transfer, exposed for unit tests:
 * resp is what the core hands to classify (borrowed); res is filled as the
 * worker would fill it. Pure. */
void sms_classify_response(const cmn_worker_response_t *resp, cmn_worker_result_t *res);

#endif
