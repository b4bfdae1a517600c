/* wa_worker.h - the WhatsApp channel of the worker core (crm/worker.h):
 * configuration, and the cmn_worker_channel_t that turns a Dispatch into one
 * HTTPS request to Meta's Cloud API or to Twilio (WHATSAPP_PROVIDER).
 *
 * prepare: read the recipient's 24-hour window (conversations table, one
 *          query per batch when the core offers prepare_batch, else one
 *          per message), decide free-form or template (wa_window), render
 *          the free text (wa_text) or fill the template (wa_templates), and
 *          build the provider request (wa_meta / wa_twilio);
 * sender:  the rate-limit key: the phone-number id (Meta) or the From
 *          number (Twilio); one worker sends for one sender;
 * submit:  a libcurl POST (HTTP/2 requested: CURL_HTTP_VERSION_2TLS);
 * classify: 2xx -> sent with the provider's id (wamid..., SM...); a Graph
 *          or Twilio error -> cmn_provider_classify_meta/_twilio; no answer
 *          -> retryable.
 *
 * Status mapping (docs/whatsapp.md): provider "meta" or "twilio";
 * provider_message_id the wamid or the Message SID on sent; failed carries
 * error_code (the provider's code, "http_<status>", or ours:
 * no_template_outside_window, no_template, invalid_template_parameter,
 * invalid_whatsapp_context, invalid_number, window_unknown, ...), and for
 * permanent failures the reason token. details (JSON) says which window and
 * which kind of message: {"window":"closed","kind":"template",
 * "template":"appointment_reminder","language":"fr"}.
 *
 * Phone numbers, message text and the access token never reach a log line. */
#ifndef WA_WORKER_H
#define WA_WORKER_H

#include <stddef.h>

#include "crm/config.h"
#include "crm/dispatch.h"
#include "crm/log.h"
#include "crm/metrics.h"
#include "crm/worker.h"

typedef enum wa_provider { WA_PROVIDER_META = 0, WA_PROVIDER_TWILIO = 1 } wa_provider_t;

/* Every setting of crm-whatsapp-worker, filled by cmn_config_load() from
 * the table returned by wa_worker_config_table(). */
typedef struct wa_worker_config {
    char *kafka_brokers;
    char *http_bind;
    long http_port;
    char *log_level;
    char *provider;
    char *api_url;
    char *api_version;
    char *phone_number_id;
    char *access_token;
    char *twilio_api_url;
    char *twilio_account_sid;
    char *twilio_auth_token;
    char *twilio_whatsapp_number;
    char *twilio_status_callback_url;
    char *database_url;
    char *data_key;
    char *templates_dir;
    char *templates_file;
    char *fallback_locale;
    double rate_per_second;
    double rate_burst;
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
    long timeout_ms;
    long window_margin_seconds;
} wa_worker_config_t;

/* The static table; its length in *n. */
const cmn_cfg_entry_t *wa_worker_config_table(size_t *n);

/* Checks what the table cannot: the provider's own settings are present and
 * well-formed, DATABASE_URL parses, CRM_DATA_KEY is long enough. Returns 0
 * or CMN_ERR_CONFIG with one "VARIABLE: reason" line in errstr. */
int wa_worker_config_check(const wa_worker_config_t *cfg, char *errstr, size_t errlen);

/* WA_PROVIDER_TWILIO when cfg->provider is "twilio", else META. */
wa_provider_t wa_worker_provider(const wa_worker_config_t *cfg);

typedef struct wa_channel wa_channel_t;

/* Loads the free-text templates and the approved-template map, builds the
 * provider URL and headers. Connects to PostgreSQL lazily (the first batch),
 * so a database that starts later does not stop the worker. cfg, log and
 * metrics (may be NULL) are borrowed and must outlive the channel. NULL with
 * the reason in errstr. */
wa_channel_t *wa_channel_new(const wa_worker_config_t *cfg, const cmn_log_t *log, cmn_metrics_t *metrics,
                             char *errstr, size_t errlen);
/* NULL is a no-op. */
void wa_channel_destroy(wa_channel_t *c);

/* Fills ch with the WhatsApp vtable bound to c (c must outlive ch's use). */
void wa_channel_bind(wa_channel_t *c, cmn_worker_channel_t *ch);

/* Reads the windows of every WhatsApp dispatch of a batch in one query and
 * keeps them for the prepare calls that follow (until the next call). The
 * dispatches are borrowed for the call. Meant as the core's per-batch hook;
 * without it prepare looks each recipient up on its own. Returns 0, or a
 * negative code when the lookup failed (prepare then treats the windows as
 * unknown, see wa_window_decide). */
int wa_channel_prepare_batch(void *impl, const cmn_dispatch_t *const *ds, size_t n);

#endif
