/* crmctl_testsend.c - `crmctl test-email`, `crmctl test-sms` and
 * `crmctl test-whatsapp`: send one message through the configured provider
 * and print the provider's answer, or what went wrong and what to check.
 *
 *   crmctl test-email --to ana@example.com [--subject S] [--text T]
 *   crmctl test-sms --to +33612345678 [--body TEXT]
 *   crmctl test-whatsapp --to +14155550100 [--text T | --template NAME --language CODE]
 *
 * Each command reads the same environment variables as its worker, through
 * the worker's own configuration table and checks, and builds the message
 * with the worker's own modules (MIME builder and SMTP transfer; Twilio form
 * and answer parsers; Graph API body and error parser), so a test that
 * passes here exercises the exact configuration and request shapes the
 * worker will use. What the commands do not share with the workers is the
 * message itself: it comes from the command line, not from a template and a
 * dispatch, so no templates, Kafka or database are needed.
 *
 * Output: the provider's answer on stdout (queue id, message sid, wamid);
 * any failure on stderr as one "error:" line, the provider's own fields, and
 * a "hint:" naming the setting to check. Secrets (passwords, tokens) are
 * never printed, and the recipient appears only as the operator typed it.
 *
 * Exit status: 0 the provider accepted the message; 1 the provider refused
 * it, could not be reached, or the recipient cannot receive it (invalid
 * address or number, landline for SMS); 2 usage or configuration error (the
 * message names the option or variable). */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/config.h"
#include "crm/err.h"
#include "crm/phone.h"
#include "crm/sms.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "crmctl.h"
#include "email_mime.h"
#include "email_smtp.h"
#include "email_worker.h"
#include "sms_request.h"
#include "sms_twilio.h"
#include "sms_worker.h"
#include "wa_content.h"
#include "wa_meta.h"
#include "wa_templates.h"
#include "wa_twilio.h"
#include "wa_worker.h"

#define TS_EXIT_OK 0
#define TS_EXIT_FAIL 1
#define TS_EXIT_USAGE 2

/* Provider answers are a few hundred bytes; anything far larger is not an
 * answer we can read, so the rest is dropped rather than buffered. */
#define TS_ANSWER_MAX (256 * 1024)

#define TS_USER_AGENT "crmctl-test-send/0.1"

/* ------------------------------------------------------------ arguments */

typedef struct ts_opt {
    const char *name;   /* "--to" */
    const char **value; /* receives the argument that follows (borrowed from argv) */
} ts_opt_t;

/* Reads "--name value" pairs into opts. Returns 0, 1 when --help was asked,
 * or -1 after printing what is wrong. */
static int parse_opts(const char *cmd, int argc, char **argv, const ts_opt_t *opts, size_t nopts)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        const ts_opt_t *o = NULL;
        for (size_t k = 0; k < nopts && o == NULL; k++) {
            if (strcmp(a, opts[k].name) == 0)
                o = &opts[k];
        }
        if (o == NULL) {
            fprintf(stderr, "crmctl %s: unexpected argument '%s'\n", cmd, a);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "crmctl %s: %s needs a value\n", cmd, a);
            return -1;
        }
        *o->value = argv[++i];
    }
    return 0;
}

/* --------------------------------------------------------- configuration */

/* Prints every line of a multi-line "VARIABLE: reason" report. */
static void print_config_errors(const char *cmd, const char *lines)
{
    const char *p = lines;
    while (*p != '\0') {
        size_t n = strcspn(p, "\n");
        if (n > 0)
            fprintf(stderr, "crmctl %s: config error: %.*s\n", cmd, (int)n, p);
        p += n;
        if (*p == '\n')
            p++;
    }
}

/* Loads table from the environment into cfg (zeroed by the caller); the
 * caller frees with cmn_config_free whatever the result. Returns 0 or
 * CMN_ERR_CONFIG after printing one line per problem. */
static int load_config(const char *cmd, const cmn_cfg_entry_t *table, size_t n, void *cfg)
{
    char err[4096] = "";
    if (cmn_config_load(table, n, cfg, err, sizeof err) == 0)
        return 0;
    print_config_errors(cmd, err);
    return CMN_ERR_CONFIG;
}

/* ------------------------------------------------------------- transport */

/* The settings that decide where and how a command connects, named in the
 * hints of transport failures. */
typedef struct ts_vars {
    const char *endpoint;      /* "SMTP_HOST and SMTP_PORT", "TWILIO_API_URL" */
    const char *ca_var;        /* "SMTP_CA_FILE", or NULL when the worker has no such setting */
    const char *ca_value;      /* its value; "" for the system store */
    const char *timeout_var;   /* "SMTP_TIMEOUT_MS" */
} ts_vars_t;

/* Explains a failure where the server never gave a protocol answer. detail
 * is libcurl's error buffer ("" when empty). */
static void print_transport_error(const char *cmd, CURLcode code, const char *detail, const ts_vars_t *v)
{
    const char *d = detail != NULL && detail[0] != '\0' ? detail : curl_easy_strerror(code);
    int private_ca = v->ca_value != NULL && v->ca_value[0] != '\0';
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
        fprintf(stderr, "crmctl %s: error: cannot resolve the server's name (%s)\n  hint: check %s\n", cmd, d,
                v->endpoint);
        break;
    case CURLE_COULDNT_CONNECT:
        fprintf(stderr,
                "crmctl %s: error: connection refused or server unreachable (%s)\n"
                "  hint: check %s, and that the server is up and reachable from this host\n",
                cmd, d, v->endpoint);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        fprintf(stderr,
                "crmctl %s: error: no answer in time (%s)\n  hint: check %s and the network path, or raise %s\n",
                cmd, d, v->endpoint, v->timeout_var);
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CIPHER:
        /* No certificate was judged: the two ends did not agree on TLS at
         * all, typically TLS spoken to a plain-text port or the reverse. */
        fprintf(stderr,
                "crmctl %s: error: TLS handshake failed (%s)\n"
                "  hint: check %s: the server there does not speak TLS as expected (wrong port, or http and "
                "https mixed up)\n",
                cmd, d, v->endpoint);
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
        fprintf(stderr, "crmctl %s: error: TLS verification failed (%s)\n", cmd, d);
        /* Verification is never turned off; the usual cause is a server
         * whose certificate comes from a private or test CA. */
        if (v->ca_var == NULL)
            fprintf(stderr, "  hint: the server's certificate is not trusted by the system CA store; check %s\n",
                    v->endpoint);
        else if (private_ca)
            fprintf(stderr, "  hint: the server's certificate is not signed by the CA in %s, or its name does not "
                            "match %s\n", v->ca_var, v->endpoint);
        else
            fprintf(stderr, "  hint: the server's certificate is not trusted by the system CA store; if the server "
                            "uses a private CA, set %s to its PEM bundle\n", v->ca_var);
        break;
    case CURLE_SSL_CACERT_BADFILE:
        fprintf(stderr, "crmctl %s: error: cannot read the CA bundle (%s)\n  hint: %s must name a readable PEM file\n",
                cmd, d, v->ca_var != NULL ? v->ca_var : "the CA bundle");
        break;
    default:
        fprintf(stderr, "crmctl %s: error: %s\n  hint: check %s\n", cmd, d, v->endpoint);
        break;
    }
}

typedef struct ts_post {
    const char *url;
    const struct curl_slist *headers;
    const char *body;
    size_t body_len;
    const char *user;     /* NULL: no basic auth */
    const char *password;
    const char *ca_file;  /* NULL or "": the system store */
    long timeout_ms;
    int http2;            /* 1: ask for HTTP/2 over TLS, as the worker does */
} ts_post_t;

typedef struct ts_answer {
    CURLcode code;                 /* the transfer's result */
    long status;                   /* HTTP status; 0 without an answer */
    cmn_buf_t body;                /* at most TS_ANSWER_MAX bytes; freed by the caller */
    char error[CURL_ERROR_SIZE];   /* libcurl's description of a failure */
} ts_answer_t;

static size_t collect_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
    ts_answer_t *a = userdata;
    size_t n = size * nmemb;
    size_t room = a->body.len < TS_ANSWER_MAX ? TS_ANSWER_MAX - a->body.len : 0;
    size_t keep = n < room ? n : room;
    /* Returning less than n aborts the transfer: only do so when memory
     * runs out, never because an answer is long. */
    if (keep > 0 && cmn_buf_append(&a->body, data, keep) != 0)
        return 0;
    return n;
}

/* Runs one POST to completion. Returns 0 when it ran (a->code may still be
 * a transport failure) or CMN_ERR_NOMEM when libcurl could not be set up. */
static int http_post(const ts_post_t *p, ts_answer_t *a)
{
    CURL *e = curl_easy_init();
    CURLcode rc = e != NULL ? CURLE_OK : CURLE_OUT_OF_MEMORY;
#define SET(opt, val)                                                                                                \
    do {                                                                                                             \
        if (rc == CURLE_OK)                                                                                          \
            rc = curl_easy_setopt(e, opt, val);                                                                      \
    } while (0)
    SET(CURLOPT_URL, p->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, p->body);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->body_len);
    SET(CURLOPT_HTTPHEADER, p->headers);
    SET(CURLOPT_USERAGENT, TS_USER_AGENT);
    SET(CURLOPT_TIMEOUT_MS, p->timeout_ms);
    /* A redirect would resend the credentials to another place; neither
     * provider redirects its send endpoint. */
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_WRITEFUNCTION, collect_cb);
    SET(CURLOPT_WRITEDATA, a);
    SET(CURLOPT_ERRORBUFFER, a->error);
    if (p->http2)
        SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    if (p->ca_file != NULL && p->ca_file[0] != '\0')
        SET(CURLOPT_CAINFO, p->ca_file);
    if (p->user != NULL) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        /* libcurl copies both; the secret stays out of our buffers. */
        SET(CURLOPT_USERNAME, p->user);
        SET(CURLOPT_PASSWORD, p->password);
    }
#undef SET
    if (rc != CURLE_OK) {
        curl_easy_cleanup(e);
        return CMN_ERR_NOMEM;
    }
    a->code = curl_easy_perform(e);
    if (a->code == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &a->status);
    curl_easy_cleanup(e);
    return 0;
}

/* --------------------------------------------------------------- hints */

typedef struct ts_hint {
    long code;
    const char *text;
} ts_hint_t;

/* Twilio's codes an operator meets when setting up (SMS and WhatsApp). */
static const ts_hint_t TWILIO_HINTS[] = {
    {20003, "authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (the live credentials of the "
            "account; a rotated token stops working at once)"},
    {20404, "not found: check TWILIO_ACCOUNT_SID and TWILIO_API_URL"},
    {21211, "Twilio considers the To number invalid: check the number and its country code"},
    {21212, "the From number is invalid: check TWILIO_PHONE_NUMBER (TWILIO_WHATSAPP_NUMBER for WhatsApp)"},
    {21408, "the account may not send to this country: enable it in the console under Messaging > Settings > "
            "Geo permissions"},
    {21606, "this From number cannot send this message: it must be an SMS-capable number of the account "
            "(TWILIO_PHONE_NUMBER)"},
    {21608, "trial accounts send only to verified numbers: verify the recipient in the console (Phone Numbers > "
            "Verified Caller IDs) or upgrade the account"},
    {21610, "the recipient replied STOP to this sender and is unsubscribed: Twilio refuses every message until "
            "they reply START"},
    {21612, "Twilio cannot route a message from this sender to this recipient (carrier or number type)"},
    {21614, "the To number is not a mobile number, so it cannot receive SMS"},
    {21659, "the From number is not a number of this account: check TWILIO_PHONE_NUMBER"},
    {63007, "no WhatsApp sender matches the From number: check TWILIO_WHATSAPP_NUMBER (it must be WhatsApp-enabled "
            "in the console)"},
    {63015, "the Twilio WhatsApp sandbox only delivers to numbers that joined it: send the join code from the "
            "recipient's phone first"},
    {63016, "outside the 24-hour window WhatsApp refuses free text: send an approved template with --template "
            "HX... (its Content SID)"},
};

/* Graph API codes of the WhatsApp Cloud API an operator meets. */
static const ts_hint_t META_HINTS[] = {
    {10, "the token lacks a permission: the system user needs whatsapp_business_messaging on this WhatsApp "
         "Business Account"},
    {100, "a parameter was refused: check WHATSAPP_PHONE_NUMBER_ID and, for a template, --template and --language"},
    {190, "the access token is expired or invalid: generate a new system-user token with "
          "whatsapp_business_messaging and set WHATSAPP_ACCESS_TOKEN"},
    {200, "the token lacks a permission: the system user needs whatsapp_business_messaging on this WhatsApp "
          "Business Account"},
    {368, "the account is temporarily blocked for policy violations: see the WhatsApp Manager"},
    {130429, "the Cloud API throughput limit was reached: try again shortly"},
    {131026, "the message cannot be delivered: the number may not be on WhatsApp, or its app is too old"},
    {131030, "the recipient is not in the allowed list of this test number: add it in the WhatsApp Manager (API "
             "Setup > To), or send from a production number"},
    {131031, "the WhatsApp Business Account is locked or restricted: see the WhatsApp Manager"},
    {131047, "more than 24 hours have passed since the recipient last wrote, so free text is refused: send an "
             "approved template with --template NAME --language CODE"},
    {131056, "too many messages to this recipient in a short time: wait a minute and try again"},
    {132000, "the template expects parameters: test-whatsapp sends templates without parameters, so pick one "
             "without variables"},
    {132001, "no approved template of this name in this language: check --template and --language in the "
             "WhatsApp Manager"},
    {133010, "the sending number is not registered with the Cloud API: register WHATSAPP_PHONE_NUMBER_ID first"},
};

/* A hint for an answer that carries no provider error body. */
static const char *status_hint(long status, const char *credentials, const char *endpoint)
{
    if (status == 401 || status == 403)
        return credentials;
    if (status == 404)
        return endpoint;
    if (status == 429 || status >= 500)
        return "the provider (or a proxy in front of it) is overloaded or failing: try again shortly";
    return NULL;
}

static void print_hint(const ts_hint_t *hints, size_t n, long code, const char *fallback)
{
    const char *text = fallback;
    for (size_t i = 0; i < n; i++) {
        if (hints[i].code == code)
            text = hints[i].text;
    }
    if (text != NULL)
        fprintf(stderr, "  hint: %s\n", text);
}

/* ----------------------------------------------------------- test-email */

static void email_usage(FILE *out)
{
    fprintf(out, "usage: crmctl test-email --to ADDRESS [--subject S] [--text T]\n"
                 "\n"
                 "Sends one plain-text message through the SMTP server of crm-email-worker's\n"
                 "configuration (SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD,\n"
                 "SMTP_FROM_EMAIL, SMTP_FROM_NAME, SMTP_USE_TLS, SMTP_CA_FILE, SMTP_TIMEOUT_MS)\n"
                 "and prints the server's final reply, e.g. \"250 2.0.0 Ok: queued as 4XyZ\".\n"
                 "\n"
                 "Exit status: 0 accepted, 1 refused or unreachable, 2 usage or configuration error.\n");
}

/* Explains an SMTP transfer that did not end in 250. */
static void email_report_failure(const char *url, const email_worker_config_t *cfg, email_smtp_transfer_t *tx,
                                 CURLcode cc)
{
    long code = 0;
    curl_easy_getinfo(email_smtp_transfer_easy(tx), CURLINFO_RESPONSE_CODE, &code);
    const char *reply = email_smtp_transfer_reply(tx, code);
    const char *step = email_smtp_transfer_error(tx);
    const char *later = code >= 400 && code < 500 ? " (temporary: the same message may pass later)" : "";
    ts_vars_t v = {"SMTP_HOST and SMTP_PORT", "SMTP_CA_FILE", cfg->smtp_ca_file, "SMTP_TIMEOUT_MS"};

    if (cc == CURLE_LOGIN_DENIED || code == 535) {
        fprintf(stderr,
                "crmctl test-email: error: authentication failed: %s\n"
                "  hint: check SMTP_USERNAME and SMTP_PASSWORD (many providers want an app password or API key "
                "here, not the account's login password)\n",
                reply[0] != '\0' ? reply : step);
    } else if (code == 530) {
        fprintf(stderr,
                "crmctl test-email: error: the server requires authentication: %s\n"
                "  hint: set SMTP_USERNAME and SMTP_PASSWORD\n",
                reply);
    } else if (cc == CURLE_USE_SSL_FAILED) {
        fprintf(stderr,
                "crmctl test-email: error: the server at %s does not offer STARTTLS\n"
                "  hint: SMTP_USE_TLS=true requires it; use SMTP_PORT=465 for implicit TLS, or check SMTP_PORT\n",
                url);
    } else if (code >= 400 && code <= 599) {
        /* libcurl's error buffer names the command the server refused,
         * which says whose fault it is. */
        if (strncmp(step, "RCPT", 4) == 0)
            fprintf(stderr,
                    "crmctl test-email: error: recipient refused: %s%s\n"
                    "  hint: the server does not accept mail for this address (unknown mailbox, or relaying to "
                    "it is not allowed for this account)\n",
                    reply, later);
        else if (strncmp(step, "MAIL", 4) == 0)
            fprintf(stderr,
                    "crmctl test-email: error: sender refused: %s%s\n"
                    "  hint: the account may not send as SMTP_FROM_EMAIL; use an address or domain it owns\n",
                    reply, later);
        else
            fprintf(stderr, "crmctl test-email: error: message refused: %s%s\n", reply, later);
    } else {
        print_transport_error("test-email", cc, step, &v);
    }
}

int crmctl_test_email_main(int argc, char **argv)
{
    const char *to = NULL, *subject = "CRM test message", *text = NULL;
    const ts_opt_t opts[] = {{"--to", &to}, {"--subject", &subject}, {"--text", &text}};
    email_worker_config_t cfg;
    size_t ntable = 0;
    const cmn_cfg_entry_t *table = email_worker_config_table(&ntable);
    email_smtp_t *smtp = NULL;
    email_smtp_transfer_t *tx = NULL;
    cmn_buf_t mime = CMN_BUF_INIT;
    char errstr[1024] = "";
    char msgid[EMAIL_MIME_MSGID_MAX] = "";
    char id_token[CMN_UUID_STR_LEN + 1], boundary[CMN_UUID_STR_LEN + 1];
    email_mime_error_t merr = {0};
    int curl_ready = 0;
    int exit_code = TS_EXIT_USAGE;
    int show_usage = 0; /* an argument was wrong: the usage follows the message */

    memset(&cfg, 0, sizeof cfg);
    int prc = parse_opts("test-email", argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (prc == 1) {
        email_usage(stdout);
        exit_code = TS_EXIT_OK;
        goto cleanup;
    }
    if (prc != 0) {
        show_usage = 1;
        goto cleanup;
    }
    if (to == NULL) {
        fprintf(stderr, "crmctl test-email: --to is required\n");
        show_usage = 1;
        goto cleanup;
    }
    if (load_config("test-email", table, ntable, &cfg) != 0)
        goto cleanup;
    if (email_worker_config_check(&cfg, errstr, sizeof errstr) != 0) {
        print_config_errors("test-email", errstr);
        goto cleanup;
    }
    /* The worker refuses such an address as a permanent failure; so do we,
     * before any connection. */
    if (!email_mime_valid_address(to)) {
        fprintf(stderr, "crmctl test-email: error: --to %s is not an address we send to (like ana@example.com)\n",
                to);
        exit_code = TS_EXIT_FAIL;
        goto cleanup;
    }
    email_smtp_config_t sc = {
        .host = cfg.smtp_host,
        .port = (int)cfg.smtp_port,
        .username = cfg.smtp_username,
        .password = cfg.smtp_password,
        .from_email = cfg.smtp_from_email,
        .use_tls = cfg.smtp_use_tls,
        .ca_file = cfg.smtp_ca_file,
        .timeout_ms = cfg.smtp_timeout_ms,
    };
    smtp = email_smtp_new(&sc, errstr, sizeof errstr);
    if (smtp == NULL) {
        print_config_errors("test-email", errstr);
        goto cleanup;
    }

    exit_code = TS_EXIT_FAIL;
    if (cmn_uuid_v4(id_token) != 0 || cmn_uuid_v4(boundary) != 0) {
        fprintf(stderr, "crmctl test-email: error: cannot make message ids\n");
        goto cleanup;
    }
    /* The boundary is the UUID's 32 hex digits (hyphens are not allowed). */
    size_t k = 0;
    for (size_t i = 0; boundary[i] != '\0'; i++) {
        if (boundary[i] != '-')
            boundary[k++] = boundary[i];
    }
    boundary[k] = '\0';
    email_mime_input_t in = {
        .from = {.name = cfg.smtp_from_name, .addr = cfg.smtp_from_email},
        .to = {.name = NULL, .addr = to},
        .subject = subject,
        .text = text != NULL ? text
                             : "This is a test message sent by crmctl test-email to check the SMTP settings of "
                               "the CRM messaging engine. No reply is needed.",
        .date_ms = cmn_now_ms(),
        .id_token = id_token,
        .boundary_token = boundary,
    };
    int rc = email_mime_build(&in, &mime, msgid, &merr);
    if (rc == CMN_ERR_INVALID) {
        /* Only the command line can be at fault here: the configured From
         * was checked above. */
        fprintf(stderr, "crmctl test-email: cannot build the message: %s (%s)\n", merr.detail,
                merr.code != NULL ? merr.code : "invalid");
        exit_code = TS_EXIT_USAGE;
        goto cleanup;
    }
    if (rc != 0) {
        fprintf(stderr, "crmctl test-email: error: cannot build the message: %s\n", cmn_strerror(rc));
        goto cleanup;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "crmctl test-email: error: cannot initialise libcurl\n");
        goto cleanup;
    }
    curl_ready = 1;
    size_t len = mime.len;
    tx = email_smtp_transfer_new(smtp, to, cmn_buf_steal(&mime), len);
    CURL *easy = tx != NULL ? email_smtp_transfer_easy(tx) : NULL;
    if (easy == NULL) {
        fprintf(stderr, "crmctl test-email: error: out of memory\n");
        goto cleanup;
    }
    CURLcode cc = curl_easy_perform(easy);
    if (cc != CURLE_OK) {
        email_report_failure(email_smtp_url(smtp), &cfg, tx, cc);
        goto cleanup;
    }
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    printf("crmctl test-email: accepted by %s\n", email_smtp_url(smtp));
    printf("  to:         %s\n", to);
    printf("  reply:      %s\n", email_smtp_transfer_reply(tx, code));
    printf("  message-id: %s\n", msgid);
    exit_code = TS_EXIT_OK;
cleanup:
    if (show_usage)
        email_usage(stderr);
    email_smtp_transfer_free(tx);
    email_smtp_destroy(smtp);
    cmn_buf_free(&mime);
    if (curl_ready)
        curl_global_cleanup();
    cmn_config_free(table, ntable, &cfg);
    return exit_code;
}

/* ------------------------------------------------------------- test-sms */

static void sms_usage(FILE *out)
{
    fprintf(out, "usage: crmctl test-sms --to +E164 [--body TEXT]\n"
                 "\n"
                 "Sends one SMS through Twilio with crm-sms-worker's configuration\n"
                 "(TWILIO_API_URL, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_PHONE_NUMBER\n"
                 "or TWILIO_MESSAGING_SERVICE_SID, TWILIO_CA_FILE, TWILIO_TIMEOUT_MS) and prints\n"
                 "the message sid and status, or Twilio's error with a hint.\n"
                 "The number is checked first: an invalid number or a landline is refused\n"
                 "without contacting Twilio.\n"
                 "\n"
                 "Exit status: 0 accepted, 1 refused or unreachable, 2 usage or configuration error.\n");
}

/* Prints a Twilio refusal (SMS or WhatsApp): its fields, then a hint. */
static void print_twilio_refusal(const char *cmd, long status, int parsed, long code, const char *message,
                                 const char *more_info)
{
    fprintf(stderr, "crmctl %s: error: %s twilio (HTTP %ld)\n", cmd, status >= 500 ? "failure at" : "refused by",
            status);
    if (!parsed) {
        fprintf(stderr, "  (the answer is not a Twilio error body)\n");
        const char *h = status_hint(status, "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
                                    "check TWILIO_API_URL and TWILIO_ACCOUNT_SID");
        if (h != NULL)
            fprintf(stderr, "  hint: %s\n", h);
        return;
    }
    if (code != 0)
        fprintf(stderr, "  code:      %ld\n", code);
    if (message[0] != '\0')
        fprintf(stderr, "  message:   %s\n", message);
    if (more_info[0] != '\0')
        fprintf(stderr, "  more_info: %s\n", more_info);
    print_hint(TWILIO_HINTS, sizeof TWILIO_HINTS / sizeof TWILIO_HINTS[0], code,
               status_hint(status, "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
                           "check TWILIO_API_URL and TWILIO_ACCOUNT_SID"));
}

/* Refuses, before anything is sent, a number that cannot receive an SMS:
 * the same rule as the worker's (crm/phone.h). Returns 0 with the E.164
 * form in e164, or -1 after printing why. */
static int sms_check_number(const char *to, char e164[CMN_PHONE_E164_MAX])
{
    cmn_phone_info_t info;
    int rc = cmn_phone_check(to, &info);
    if (rc == CMN_ERR_NOMEM) {
        fprintf(stderr, "crmctl test-sms: error: out of memory\n");
        return -1;
    }
    if (rc != 0 || !info.valid) {
        fprintf(stderr,
                "crmctl test-sms: error: --to %s is not a valid phone number%s%s; nothing was sent\n"
                "  hint: give it in international form with its country code, like +33612345678\n",
                to, info.region[0] != '\0' ? " for region " : "", info.region);
        return -1;
    }
    if (info.type == CMN_PHONE_FIXED_LINE) {
        fprintf(stderr, "crmctl test-sms: error: --to %s is a fixed line (%s), which cannot receive SMS; nothing "
                        "was sent\n", to, info.region);
        return -1;
    }
    if (!cmn_phone_is_messageable(info.type)) {
        fprintf(stderr, "crmctl test-sms: error: --to %s is a %s number (%s), which cannot receive SMS; nothing "
                        "was sent\n", to, cmn_phone_type_name(info.type), info.region);
        return -1;
    }
    memcpy(e164, info.e164, CMN_PHONE_E164_MAX);
    return 0;
}

int crmctl_test_sms_main(int argc, char **argv)
{
    const char *to = NULL, *body = "Test message from crmctl test-sms.";
    const ts_opt_t opts[] = {{"--to", &to}, {"--body", &body}};
    sms_worker_config_t cfg;
    size_t ntable = 0;
    const cmn_cfg_entry_t *table = sms_worker_config_table(&ntable);
    cmn_buf_t url = CMN_BUF_INIT, form = CMN_BUF_INIT;
    struct curl_slist *headers = NULL;
    ts_answer_t ans = {.body = CMN_BUF_INIT};
    char errstr[1024] = "";
    char e164[CMN_PHONE_E164_MAX] = "";
    cmn_sms_info_t info;
    int curl_ready = 0;
    int exit_code = TS_EXIT_USAGE;
    int show_usage = 0; /* an argument was wrong: the usage follows the message */

    memset(&cfg, 0, sizeof cfg);
    int prc = parse_opts("test-sms", argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (prc == 1) {
        sms_usage(stdout);
        exit_code = TS_EXIT_OK;
        goto cleanup;
    }
    if (prc != 0) {
        show_usage = 1;
        goto cleanup;
    }
    if (to == NULL) {
        fprintf(stderr, "crmctl test-sms: --to is required\n");
        show_usage = 1;
        goto cleanup;
    }
    /* The worker's limits: valid UTF-8, not empty, at most 1,600 units. */
    if (cmn_sms_analyze(body, &info) != 0 || info.characters == 0 || !info.within_limit) {
        fprintf(stderr, "crmctl test-sms: --body must be non-empty UTF-8 text of at most %d characters\n",
                CMN_SMS_MAX_UNITS);
        show_usage = 1;
        goto cleanup;
    }
    if (load_config("test-sms", table, ntable, &cfg) != 0)
        goto cleanup;
    if (sms_worker_config_check(&cfg, errstr, sizeof errstr) != 0) {
        print_config_errors("test-sms", errstr);
        goto cleanup;
    }

    exit_code = TS_EXIT_FAIL;
    if (sms_check_number(to, e164) != 0)
        goto cleanup;
    /* No StatusCallback: it names a communication, and a test message is
     * none, so the webhook receiver would have nothing to attribute it to. */
    sms_request_t req = {
        .to = e164,
        .from = cfg.twilio_phone_number,
        .messaging_service_sid = cfg.twilio_messaging_service_sid,
        .body = body,
    };
    int rc = sms_request_url(cfg.twilio_api_url, cfg.twilio_account_sid, &url);
    if (rc == 0)
        rc = sms_request_form(&req, &form);
    if (rc == 0) {
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
        headers = h != NULL ? curl_slist_append(h, "Accept: application/json") : NULL;
        if (headers == NULL) {
            curl_slist_free_all(h);
            rc = CMN_ERR_NOMEM;
        }
    }
    if (rc != 0) {
        fprintf(stderr, "crmctl test-sms: error: cannot build the request: %s\n", cmn_strerror(rc));
        goto cleanup;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "crmctl test-sms: error: cannot initialise libcurl\n");
        goto cleanup;
    }
    curl_ready = 1;
    ts_post_t post = {
        .url = url.data,
        .headers = headers,
        .body = form.data,
        .body_len = form.len,
        .user = cfg.twilio_account_sid,
        .password = cfg.twilio_auth_token,
        .ca_file = cfg.twilio_ca_file,
        .timeout_ms = cfg.twilio_timeout_ms,
    };
    if (http_post(&post, &ans) != 0) {
        fprintf(stderr, "crmctl test-sms: error: out of memory\n");
        goto cleanup;
    }
    if (ans.code != CURLE_OK) {
        ts_vars_t v = {"TWILIO_API_URL", "TWILIO_CA_FILE", cfg.twilio_ca_file, "TWILIO_TIMEOUT_MS"};
        print_transport_error("test-sms", ans.code, ans.error, &v);
        goto cleanup;
    }
    if (ans.status < 200 || ans.status > 299) {
        sms_twilio_error_t te;
        int parsed = sms_twilio_parse_error(ans.body.data, ans.body.len, &te) == 0;
        print_twilio_refusal("test-sms", ans.status, parsed, te.code, te.message, te.more_info);
        goto cleanup;
    }
    sms_twilio_created_t created;
    if (sms_twilio_parse_created(ans.body.data, ans.body.len, &created) != 0) {
        fprintf(stderr, "crmctl test-sms: error: HTTP %ld from twilio without a message sid in the answer\n"
                        "  hint: check that TWILIO_API_URL is Twilio's REST API\n", ans.status);
        goto cleanup;
    }
    printf("crmctl test-sms: accepted by twilio (HTTP %ld)\n", ans.status);
    printf("  to:       %s\n", to);
    printf("  sid:      %s\n", created.sid);
    printf("  status:   %s\n", created.status[0] != '\0' ? created.status : "(none)");
    printf("  segments: %zu (%s)\n", info.segments, cmn_sms_encoding_name(info.encoding));
    exit_code = TS_EXIT_OK;
cleanup:
    if (show_usage)
        sms_usage(stderr);
    curl_slist_free_all(headers);
    cmn_buf_free(&ans.body);
    cmn_buf_free(&url);
    cmn_buf_free(&form);
    if (curl_ready)
        curl_global_cleanup();
    cmn_config_free(table, ntable, &cfg);
    return exit_code;
}

/* -------------------------------------------------------- test-whatsapp */

static void wa_usage(FILE *out)
{
    fprintf(out, "usage: crmctl test-whatsapp --to +E164 [--text T | --template NAME --language CODE]\n"
                 "\n"
                 "Sends one WhatsApp message with crm-whatsapp-worker's configuration:\n"
                 "WHATSAPP_PROVIDER=meta (WHATSAPP_API_URL, WHATSAPP_API_VERSION,\n"
                 "WHATSAPP_PHONE_NUMBER_ID, WHATSAPP_ACCESS_TOKEN, WHATSAPP_TIMEOUT_MS) or\n"
                 "WHATSAPP_PROVIDER=twilio (TWILIO_API_URL, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN,\n"
                 "TWILIO_WHATSAPP_NUMBER). Prints the wamid (Meta) or message sid (Twilio), or\n"
                 "the provider's error with a hint.\n"
                 "\n"
                 "Free text (--text, the default) is only delivered within 24 hours of the\n"
                 "recipient's last message; otherwise send an approved template without\n"
                 "parameters: --template NAME --language CODE (Meta, e.g. hello_world en_US),\n"
                 "or --template HX... (Twilio: the Content SID, which already fixes the language).\n"
                 "\n"
                 "Exit status: 0 accepted, 1 refused or unreachable, 2 usage or configuration error.\n");
}

/* DATABASE_URL and CRM_DATA_KEY serve the worker's window lookup; a test
 * send does not look the window up (the operator picks text or template),
 * so they are neither required nor read. */
static const char *const WA_UNUSED_VARS[] = {"DATABASE_URL", "CRM_DATA_KEY"};

static int wa_var_unused(const char *name)
{
    for (size_t i = 0; i < sizeof WA_UNUSED_VARS / sizeof WA_UNUSED_VARS[0]; i++) {
        if (strcmp(name, WA_UNUSED_VARS[i]) == 0)
            return 1;
    }
    return 0;
}

/* Stand-ins that pass wa_worker_config_check's database checks, so that
 * only the provider settings are judged, by the worker's own rules. */
static char WA_PROBE_DATABASE_URL[] = "postgresql://localhost/crmctl-test-whatsapp";
static char WA_PROBE_DATA_KEY[] = "crmctl-test-whatsapp-unused-data-key";

static void print_meta_refusal(long status, int parsed, const wa_meta_error_t *me)
{
    fprintf(stderr, "crmctl test-whatsapp: error: %s meta (HTTP %ld)\n", status >= 500 ? "failure at" : "refused by",
            status);
    if (!parsed) {
        fprintf(stderr, "  (the answer is not a Graph API error body)\n");
        const char *h = status_hint(status, "check WHATSAPP_ACCESS_TOKEN",
                                    "check WHATSAPP_API_URL, WHATSAPP_API_VERSION and WHATSAPP_PHONE_NUMBER_ID");
        if (h != NULL)
            fprintf(stderr, "  hint: %s\n", h);
        return;
    }
    if (me->subcode != 0)
        fprintf(stderr, "  code:       %ld (subcode %ld)\n", me->code, me->subcode);
    else if (me->code != 0)
        fprintf(stderr, "  code:       %ld\n", me->code);
    if (me->type[0] != '\0')
        fprintf(stderr, "  type:       %s\n", me->type);
    if (me->message[0] != '\0')
        fprintf(stderr, "  message:    %s\n", me->message);
    if (me->details[0] != '\0')
        fprintf(stderr, "  details:    %s\n", me->details);
    if (me->fbtrace_id[0] != '\0')
        fprintf(stderr, "  fbtrace_id: %s\n", me->fbtrace_id);
    print_hint(META_HINTS, sizeof META_HINTS / sizeof META_HINTS[0], me->code,
               status_hint(status, "check WHATSAPP_ACCESS_TOKEN",
                           "check WHATSAPP_API_URL, WHATSAPP_API_VERSION and WHATSAPP_PHONE_NUMBER_ID"));
}

/* Prints the provider's answer; returns the exit code. */
static int wa_report(wa_provider_t provider, const char *to, const ts_answer_t *ans)
{
    char id[128] = "", status[64] = "";
    const char *name = provider == WA_PROVIDER_META ? "meta" : "twilio";
    if (ans->status < 200 || ans->status > 299) {
        if (provider == WA_PROVIDER_META) {
            wa_meta_error_t me;
            int parsed = wa_meta_parse_error(ans->body.data, ans->body.len, &me) == 0;
            print_meta_refusal(ans->status, parsed, &me);
        } else {
            wa_twilio_error_t te;
            int parsed = wa_twilio_parse_error(ans->body.data, ans->body.len, &te) == 0;
            print_twilio_refusal("test-whatsapp", ans->status, parsed, te.code, te.message, te.more_info);
        }
        return TS_EXIT_FAIL;
    }
    int rc = provider == WA_PROVIDER_META
                 ? wa_meta_parse_success(ans->body.data, ans->body.len, id, sizeof id, status, sizeof status)
                 : wa_twilio_parse_created(ans->body.data, ans->body.len, id, sizeof id, status, sizeof status);
    if (rc != 0) {
        fprintf(stderr, "crmctl test-whatsapp: error: HTTP %ld from %s without a message id in the answer\n"
                        "  hint: check that %s points at the provider's API\n",
                ans->status, name, provider == WA_PROVIDER_META ? "WHATSAPP_API_URL" : "TWILIO_API_URL");
        return TS_EXIT_FAIL;
    }
    printf("crmctl test-whatsapp: accepted by %s (HTTP %ld)\n", name, ans->status);
    printf("  to:     %s\n", to);
    printf("  %-7s %s\n", provider == WA_PROVIDER_META ? "wamid:" : "sid:", id);
    if (status[0] != '\0')
        printf("  status: %s\n", status);
    return TS_EXIT_OK;
}

/* Builds the provider's URL, headers and body. Returns 0, CMN_ERR_INVALID
 * with the reason in why (the message does not fit the provider's rules),
 * or another negative code. */
static int wa_build(const wa_worker_config_t *cfg, wa_provider_t provider, const char *e164, const char *text,
                    const char *tpl, const char *lang, cmn_buf_t *url, struct curl_slist **headers,
                    cmn_buf_t *body, char *why, size_t whylen)
{
    cmn_buf_t auth = CMN_BUF_INIT;
    struct curl_slist *h = NULL;
    char from[24];
    int rc;
    if (provider == WA_PROVIDER_META) {
        wa_tpl_call_t call;
        wa_content_t content;
        memset(&call, 0, sizeof call);
        memset(&content, 0, sizeof content);
        call.name = tpl;
        call.language = lang;
        content.kind = WA_CONTENT_TEXT;
        /* Meta wants the number as digits, without the '+'. No
         * biz_opaque_callback_data: a test message is no communication. */
        wa_meta_msg_t m = {.to = e164 + 1, .tpl = tpl != NULL ? &call : NULL, .content = &content, .text = text};
        rc = wa_meta_url(cfg->api_url, cfg->api_version, cfg->phone_number_id, url);
        if (rc == 0)
            rc = wa_meta_body(&m, body, why, whylen);
    } else {
        /* The worker accepts the sender with or without its '+'. */
        const char *n = cfg->twilio_whatsapp_number;
        int len = snprintf(from, sizeof from, "%s%s", n[0] == '+' ? "" : "+", n);
        rc = len > 0 && (size_t)len < sizeof from ? 0 : CMN_ERR_INVALID;
        wa_twilio_msg_t m = {.to = e164, .from = from, .body = tpl == NULL ? text : NULL, .content_sid = tpl};
        if (rc == 0)
            rc = wa_twilio_url(cfg->twilio_api_url, cfg->twilio_account_sid, url);
        if (rc == 0)
            rc = wa_twilio_form(&m, body, why, whylen);
    }
    if (rc != 0)
        goto cleanup;
    const char *lines[3] = {"Accept: application/json",
                            provider == WA_PROVIDER_META ? "Content-Type: application/json"
                                                         : "Content-Type: application/x-www-form-urlencoded",
                            NULL};
    if (provider == WA_PROVIDER_META) {
        rc = cmn_buf_printf(&auth, "Authorization: Bearer %s", cfg->access_token) == 0 ? 0 : CMN_ERR_NOMEM;
        lines[2] = auth.data;
    }
    for (size_t i = 0; rc == 0 && i < 3; i++) {
        if (lines[i] == NULL)
            continue;
        struct curl_slist *next = curl_slist_append(h, lines[i]);
        if (next == NULL)
            rc = CMN_ERR_NOMEM;
        else
            h = next;
    }
    if (rc == 0) {
        *headers = h;
        h = NULL;
    }
cleanup:
    curl_slist_free_all(h);
    if (auth.data != NULL)
        memset(auth.data, 0, auth.len); /* the token: only the header list keeps it */
    cmn_buf_free(&auth);
    return rc;
}

int crmctl_test_whatsapp_main(int argc, char **argv)
{
    const char *to = NULL, *text = NULL, *tpl = NULL, *lang = NULL;
    const ts_opt_t opts[] = {{"--to", &to}, {"--text", &text}, {"--template", &tpl}, {"--language", &lang}};
    wa_worker_config_t cfg;
    size_t nfull = 0, ntable = 0;
    const cmn_cfg_entry_t *full = wa_worker_config_table(&nfull);
    cmn_cfg_entry_t *table = NULL;
    cmn_buf_t url = CMN_BUF_INIT, body = CMN_BUF_INIT;
    struct curl_slist *headers = NULL;
    ts_answer_t ans = {.body = CMN_BUF_INIT};
    char errstr[1024] = "", why[256] = "";
    char e164[CMN_PHONE_E164_MAX] = "";
    cmn_phone_info_t info;
    int curl_ready = 0;
    int exit_code = TS_EXIT_USAGE;
    int show_usage = 0; /* an argument was wrong: the usage follows the message */

    memset(&cfg, 0, sizeof cfg);
    int prc = parse_opts("test-whatsapp", argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (prc == 1) {
        wa_usage(stdout);
        exit_code = TS_EXIT_OK;
        goto cleanup;
    }
    if (prc != 0) {
        show_usage = 1;
        goto cleanup;
    }
    if (to == NULL) {
        fprintf(stderr, "crmctl test-whatsapp: --to is required\n");
        show_usage = 1;
        goto cleanup;
    }
    if (text != NULL && tpl != NULL) {
        fprintf(stderr, "crmctl test-whatsapp: --text and --template exclude each other\n");
        show_usage = 1;
        goto cleanup;
    }
    if (lang != NULL && tpl == NULL) {
        fprintf(stderr, "crmctl test-whatsapp: --language goes with --template\n");
        show_usage = 1;
        goto cleanup;
    }
    if (tpl == NULL && text == NULL)
        text = "Test message from crmctl test-whatsapp.";

    table = calloc(nfull, sizeof *table);
    if (table == NULL) {
        fprintf(stderr, "crmctl test-whatsapp: error: out of memory\n");
        exit_code = TS_EXIT_FAIL;
        goto cleanup;
    }
    for (size_t i = 0; i < nfull; i++) {
        if (!wa_var_unused(full[i].name))
            table[ntable++] = full[i];
    }
    if (load_config("test-whatsapp", table, ntable, &cfg) != 0)
        goto cleanup;
    wa_worker_config_t probe = cfg;
    probe.database_url = WA_PROBE_DATABASE_URL;
    probe.data_key = WA_PROBE_DATA_KEY;
    if (wa_worker_config_check(&probe, errstr, sizeof errstr) != 0) {
        print_config_errors("test-whatsapp", errstr);
        goto cleanup;
    }
    wa_provider_t provider = wa_worker_provider(&cfg);
    if (provider == WA_PROVIDER_META && tpl != NULL && lang == NULL) {
        fprintf(stderr, "crmctl test-whatsapp: --template needs --language with WHATSAPP_PROVIDER=meta (the "
                        "template's language code, e.g. en_US)\n");
        show_usage = 1;
        goto cleanup;
    }
    if (provider == WA_PROVIDER_TWILIO && tpl != NULL && (lang != NULL || !wa_twilio_valid_sid(tpl, "HX"))) {
        fprintf(stderr, "crmctl test-whatsapp: with WHATSAPP_PROVIDER=twilio, --template is the template's Content "
                        "SID (HX followed by 32 hex digits) and --language is not used\n");
        show_usage = 1;
        goto cleanup;
    }

    exit_code = TS_EXIT_FAIL;
    /* Only validity is checked: unlike SMS, WhatsApp accounts can live on
     * fixed lines, and the worker does not refuse them either. */
    int rc = cmn_phone_check(to, &info);
    if (rc != 0 || !info.valid) {
        fprintf(stderr,
                "crmctl test-whatsapp: error: --to %s is not a valid phone number; nothing was sent\n"
                "  hint: give it in international form with its country code, like +14155550100\n",
                to);
        goto cleanup;
    }
    memcpy(e164, info.e164, sizeof e164);
    rc = wa_build(&cfg, provider, e164, text, tpl, lang, &url, &headers, &body, why, sizeof why);
    if (rc == CMN_ERR_INVALID && why[0] != '\0') {
        fprintf(stderr, "crmctl test-whatsapp: cannot build the message: %s\n", why);
        exit_code = TS_EXIT_USAGE;
        goto cleanup;
    }
    if (rc != 0) {
        fprintf(stderr, "crmctl test-whatsapp: error: cannot build the request: %s\n", cmn_strerror(rc));
        goto cleanup;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "crmctl test-whatsapp: error: cannot initialise libcurl\n");
        goto cleanup;
    }
    curl_ready = 1;
    ts_post_t post = {
        .url = url.data,
        .headers = headers,
        .body = body.data,
        .body_len = body.len,
        .user = provider == WA_PROVIDER_TWILIO ? cfg.twilio_account_sid : NULL,
        .password = cfg.twilio_auth_token,
        .timeout_ms = cfg.timeout_ms,
        .http2 = 1,
    };
    if (http_post(&post, &ans) != 0) {
        fprintf(stderr, "crmctl test-whatsapp: error: out of memory\n");
        goto cleanup;
    }
    if (ans.code != CURLE_OK) {
        ts_vars_t v = {provider == WA_PROVIDER_META ? "WHATSAPP_API_URL" : "TWILIO_API_URL", NULL, NULL,
                       "WHATSAPP_TIMEOUT_MS"};
        print_transport_error("test-whatsapp", ans.code, ans.error, &v);
        goto cleanup;
    }
    exit_code = wa_report(provider, to, &ans);
cleanup:
    if (show_usage)
        wa_usage(stderr);
    /* The header list holds the bearer token; libcurl frees it without
     * wiping, which is as far as this short-lived process needs to go. */
    curl_slist_free_all(headers);
    cmn_buf_free(&ans.body);
    cmn_buf_free(&url);
    cmn_buf_free(&body);
    if (curl_ready)
        curl_global_cleanup();
    if (table != NULL)
        cmn_config_free(table, ntable, &cfg);
    free(table);
    return exit_code;
}
