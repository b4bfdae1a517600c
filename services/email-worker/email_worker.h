/* email_worker.h - the email channel of the worker core: configuration,
 * and the cmn_worker_channel_t that turns a Dispatch into an SMTP transfer.
 *
 * prepare: resolve and render the templates (subject, text, HTML), decode
 *          attachments, build the MIME message with a Message-ID derived
 *          from the communication, hop and attempt (so a redelivered
 *          dispatch produces the same Message-ID and receivers can collapse
 *          duplicates);
 * submit:  an SMTP transfer (email_smtp) to the dispatch's address;
 * classify: the SMTP reply (email_smtp_classify).
 *
 * Tracking (docs/email.md, "Tracking and unsubscribe"): with
 * TRACKING_BASE_URL and/or UNSUBSCRIBE_MAILTO every message carries
 * List-Unsubscribe (and List-Unsubscribe-Post for the https URI) with a
 * token signed by CRM_TRACKING_KEY (crm/track.h); with TRACKING_BASE_URL
 * the HTML part also gets signed click links and the open pixel.
 *
 * Status mapping (see docs/email.md): provider "smtp"; provider_message_id
 * is our Message-ID, angle brackets included, on sending, sent and failed;
 * sent carries the server's final reply in `reason` as "smtp_reply: 250 ...";
 * failed carries error_code (the SMTP code, or our code such as
 * "no_template" or "header_injection") and error_message. */
#ifndef EMAIL_WORKER_H
#define EMAIL_WORKER_H

#include <stddef.h>

#include "crm/config.h"
#include "crm/log.h"
#include "crm/worker.h"

/* Every setting of crm-email-worker, filled by cmn_config_load() from the
 * table returned by email_worker_config_table(). */
typedef struct email_worker_config {
    char *kafka_brokers;
    char *http_bind;
    long http_port;
    char *log_level;
    char *smtp_host;
    long smtp_port;
    char *smtp_username;
    char *smtp_password;
    char *smtp_from_email;
    char *smtp_from_name;
    int smtp_use_tls;
    char *smtp_ca_file;
    long smtp_timeout_ms;
    char *templates_dir;
    char *fallback_locale;
    long max_in_flight;
    long batch_size;
    char *group_id;
    long session_timeout_ms;
    char *tracking_base_url;
    char *tracking_key;
    char *unsubscribe_mailto;
    int track_opens;
    int track_clicks;
    long retry_max_attempts;
    long retry_base_ms;
    long retry_cap_ms;
} email_worker_config_t;

/* The static table; its length in *n. */
const cmn_cfg_entry_t *email_worker_config_table(size_t *n);

/* Checks what the table cannot: SMTP_FROM_EMAIL is an address, the from
 * name has no line breaks, TEMPLATE_FALLBACK_LOCALE is a locale,
 * TRACKING_BASE_URL is a base URL, UNSUBSCRIBE_MAILTO an address, and
 * CRM_TRACKING_KEY is long enough when either is set. Returns 0 or
 * CMN_ERR_CONFIG with one "VARIABLE: reason" line in errstr. */
int email_worker_config_check(const email_worker_config_t *cfg, char *errstr, size_t errlen);

typedef struct email_channel email_channel_t;

/* Opens the templates directory and the SMTP settings. cfg is borrowed and
 * must outlive the channel. NULL with the reason in errstr. */
email_channel_t *email_channel_new(const email_worker_config_t *cfg, const cmn_log_t *log, char *errstr,
                                   size_t errlen);
void email_channel_destroy(email_channel_t *c);

/* Fills ch with the email vtable bound to c (c must outlive ch's use). */
void email_channel_bind(email_channel_t *c, cmn_worker_channel_t *ch);

#endif
