/* email_smtp.h - SMTP submission through libcurl.
 *
 * One email_smtp_t holds the server settings; each message becomes an
 * email_smtp_transfer_t whose easy handle the worker core runs on its multi
 * handle (many in flight, connections reused between messages).
 *
 * Transport: smtps:// (implicit TLS) on port 465; otherwise smtp:// with
 * STARTTLS required (CURLUSESSL_ALL) when use_tls is set, plain SMTP only
 * when it is not. The server certificate and host name are always verified,
 * against ca_file when given, else the system store. AUTH (PLAIN or LOGIN,
 * whatever the server offers) is used when a username is set.
 *
 * The server's reply lines are captured from libcurl's debug stream, so a
 * sent message carries the reply to the end of DATA ("250 2.0.0 Ok: queued
 * as 4XyZ") and a refused one the reply that refused it ("550 5.1.1 ...").
 * Reply lines are never logged (they can quote the recipient address). */
#ifndef EMAIL_SMTP_H
#define EMAIL_SMTP_H

#include <curl/curl.h>
#include <stddef.h>

#include "crm/worker.h"

typedef struct email_smtp_config {
    const char *host;       /* required: name or IP (IPv6 without brackets) */
    int port;               /* 1..65535 */
    const char *username;   /* "" or NULL: no AUTH */
    const char *password;
    const char *from_email; /* MAIL FROM */
    int use_tls;            /* 1: STARTTLS required (port 465 always uses implicit TLS) */
    const char *ca_file;    /* "" or NULL: the system CA store */
    long timeout_ms;        /* whole transfer, connection included */
} email_smtp_config_t;

typedef struct email_smtp email_smtp_t;

/* Copies cfg. NULL with the reason in errstr when it is unusable (notably a
 * username without TLS, which would send the password in clear). */
email_smtp_t *email_smtp_new(const email_smtp_config_t *cfg, char *errstr, size_t errlen);
void email_smtp_destroy(email_smtp_t *s);
/* The server URL in use, e.g. "smtp://mail.example.com:587" (borrowed). */
const char *email_smtp_url(const email_smtp_t *s);

typedef struct email_smtp_transfer email_smtp_transfer_t;

/* A transfer of data (len bytes of RFC 5322 text, CRLF line endings) to
 * rcpt. Takes ownership of data (malloc'd) even on failure; copies rcpt.
 * s is borrowed and must outlive the transfer. NULL when out of memory. */
email_smtp_transfer_t *email_smtp_transfer_new(const email_smtp_t *s, const char *rcpt, char *data, size_t len);

/* Creates (once) and returns the transfer's configured easy handle, owned
 * by the transfer. NULL when libcurl cannot create it. */
CURL *email_smtp_transfer_easy(email_smtp_transfer_t *t);

/* Classifies the finished transfer (code is its CURLcode) into res: cls,
 * and detail "smtp_reply: <reply>" when sent (the status event's reason),
 * or error_code (the SMTP code, or dns_error, connect_error, timeout, tls_error, auth_error,
 * transport_error) and error_message (the reply text, "retryable: " first
 * when a later attempt may succeed). Leaves provider_message_id alone. */
void email_smtp_transfer_result(email_smtp_transfer_t *t, CURLcode code, cmn_worker_result_t *res);

/* The last reply line whose code is `code` (or the last line at all when
 * none matches) as captured so far; "" when none. Borrowed. */
const char *email_smtp_transfer_reply(const email_smtp_transfer_t *t, long code);

/* libcurl's own description of the failure (CURLOPT_ERRORBUFFER), e.g.
 * "RCPT failed: 550" or "SSL certificate problem: ...", which says at which
 * step a transfer stopped; "" when there is none. Borrowed. */
const char *email_smtp_transfer_error(const email_smtp_transfer_t *t);

void email_smtp_transfer_free(email_smtp_transfer_t *t);

/* The classification rule, pure: 5xx permanent; 4xx retryable; otherwise
 * CURLE_OK sent, any other transport failure (connect, DNS, timeout, TLS,
 * broken connection) retryable. smtp_code is CURLINFO_RESPONSE_CODE (0 when
 * the server never answered). */
cmn_worker_class_t email_smtp_classify(CURLcode code, long smtp_code);

#endif
