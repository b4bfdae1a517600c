/* test_email_worker.c - the real crm-email-worker binary between the Kafka
 * mock cluster and a real SMTP server (the aiosmtpd sandbox, with STARTTLS
 * verified against a CA made for the run, and AUTH required).
 *
 * Dispatches produced to crm.send.email must arrive as well-formed MIME
 * (checked with Python's email package, an independent parser), with
 * sending + sent (Message-ID, server reply) on crm.status; SMTP refusals,
 * template and header-injection problems become `failed`; malformed and
 * foreign records go to crm.dlq; many messages go out concurrently; a
 * SIGTERM finishes the work in hand and exits 0 without losing or repeating
 * a message; and tracking adds List-Unsubscribe (with RFC 8058 one-click),
 * signed click links and the open pixel, whose tokens are decoded and
 * verified by an independent Python implementation
 * (tests/tools/track_inspect.py). */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/stat.h>
#include <unistd.h>

#include "crm/buf.h"
#include "crm/json.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "th_kafka.h"
#include "th_proc.h"
#include "th_smtp.h"
#include "th_worker.h"

#define TENANT "acme"
#define FROM_EMAIL "notifications@crm.example"
#define FROM_NAME "Clinique Ésope"
#define TRACEPARENT "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

typedef struct fixture {
    th_worker_t w;
    th_smtp_t smtp;
} fixture_t;

static void fixture_init(fixture_t *fx, const char *name)
{
    memset(fx, 0, sizeof *fx);
    th_worker_init(&fx->w, name, TENANT, "crm.send.email", TRACEPARENT);
    cr_assert_eq(th_smtp_start(&fx->smtp, name), 0, "SMTP sandbox did not start");
}

/* Starts crm-email-worker as w, sending to smtp; extra is NULL or a
 * NULL-terminated NAME=value list that adds to or replaces the defaults
 * below (and th_worker_start's). */
static void start_worker_as(th_worker_t *w, const th_smtp_t *smtp, const char *const *extra)
{
    char smtp_port[32], user[96], pass[96], ca[700], tmpl[600], group[128];
    snprintf(smtp_port, sizeof smtp_port, "SMTP_PORT=%d", smtp->port);
    snprintf(user, sizeof user, "SMTP_USERNAME=%s", smtp->username);
    snprintf(pass, sizeof pass, "SMTP_PASSWORD=%s", smtp->password);
    snprintf(ca, sizeof ca, "SMTP_CA_FILE=%s", smtp->ca_file);
    snprintf(tmpl, sizeof tmpl, "EMAIL_TEMPLATES_DIR=%s/templates", CRM_SOURCE_DIR);
    snprintf(group, sizeof group, "EMAIL_GROUP_ID=email-test-%s", w->name);
    const char *const defaults[] = {"SMTP_HOST=127.0.0.1", smtp_port, user, pass, "SMTP_FROM_EMAIL=" FROM_EMAIL,
                                    "SMTP_FROM_NAME=" FROM_NAME, "SMTP_USE_TLS=true", ca, "SMTP_TIMEOUT_MS=20000",
                                    tmpl, group, NULL};
    th_worker_start(w, "crm-email-worker", defaults, extra);
}

static void start_worker(fixture_t *fx, const char *const *extra)
{
    start_worker_as(&fx->w, &fx->smtp, extra);
}

/* A second worker for a test that runs several configurations side by
 * side: its own mock cluster (so each worker reads only its own dispatches)
 * and consumer groups, the fixture's SMTP sandbox. Each worker's group join
 * waits out the mock coordinator's 3 s initial delay; side by side, those
 * waits overlap instead of adding up. */
static void start_side_worker(fixture_t *fx, th_worker_t *w, const char *name, const char *const *extra)
{
    th_worker_init(w, name, TENANT, "crm.send.email", TRACEPARENT);
    start_worker_as(w, &fx->smtp, extra);
}

/* Waits until the worker's group has committed every record of its input
 * topic. The worker commits a batch only once every transfer of it ended
 * and the outcomes were acknowledged, so after this no message of these
 * records is still on its way to the sandbox. */
static void wait_committed(const th_worker_t *w)
{
    char group[128];
    int64_t lag = -1;
    snprintf(group, sizeof group, "email-test-%s", w->name);
    for (int waited = 0; waited <= 60000; waited += 50) {
        cr_assert_eq(th_kafka_group_lag(w->brokers, group, w->topic, 10000, &lag), 0, "offsets of %s", group);
        if (lag == 0)
            return;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("%s left %lld records uncommitted; see %s", group, (long long)lag, w->proc.log_path);
}

static void side_worker_fini(th_worker_t *w)
{
    th_worker_stop(w);
    th_kafka_stop(w->kafka);
}

static void fixture_fini(fixture_t *fx)
{
    th_worker_stop(&fx->w);
    th_smtp_stop(&fx->smtp);
    th_kafka_stop(fx->w.kafka);
}

/* ------------------------------------------------------------ dispatches */

typedef struct dspec {
    const char *request_id;
    const char *channel;       /* NULL: "email" */
    const char *to;
    const char *name;          /* recipient.name, may be NULL */
    const char *locale;
    const char *message_type;
    const char *context;       /* JSON object text or NULL */
    const char *attachments;   /* JSON array text or NULL */
} dspec_t;

static void produce_dispatch(fixture_t *fx, const dspec_t *s)
{
    th_dispatch_t d = {.tenant = TENANT, .request_id = s->request_id, .channel = s->channel != NULL ? s->channel : "email",
                       .to = s->to, .name = s->name, .locale = s->locale, .message_type = s->message_type,
                       .context = s->context, .attachments = s->attachments};
    th_worker_produce_dispatch(&fx->w, &d);
}

/* ----------------------------------------------------------- inspection */

/* Parses a received message with Python's email package and returns what
 * the test needs as a json-c object (the caller puts it). */
static const char PY_CHECK[] =
    "import base64, email, email.policy, json, sys\n"
    "raw = open(sys.argv[1], 'rb').read()\n"
    "m = email.message_from_bytes(raw, policy=email.policy.default)\n"
    "def tree(p):\n"
    "    if p.is_multipart():\n"
    "        return {'type': p.get_content_type(), 'parts': [tree(x) for x in p.iter_parts()]}\n"
    "    return {'type': p.get_content_type(), 'filename': p.get_filename(),\n"
    "            'charset': p.get_content_charset(), 'cte': p.get('Content-Transfer-Encoding')}\n"
    "def one(h):\n"
    "    a = m[h].addresses[0]\n"
    "    return {'name': a.display_name, 'addr': a.addr_spec}\n"
    "plain = m.get_body(('plain',)); html = m.get_body(('html',))\n"
    "body = raw.split(b'\\r\\n\\r\\n', 1)[0]\n"
    "print(json.dumps({\n"
    "    'subject': str(m['subject']), 'from': one('from'), 'to': one('to'),\n"
    "    'message_id': str(m['message-id']), 'date_parsed': m['date'].datetime is not None,\n"
    "    'mime_version': str(m['mime-version']), 'tree': tree(m),\n"
    "    'text': plain.get_content() if plain else None, 'html': html.get_content() if html else None,\n"
    "    'attachments': [{'filename': a.get_filename(), 'type': a.get_content_type(),\n"
    "                     'b64': base64.b64encode(a.get_content()).decode()} for a in m.iter_attachments()],\n"
    "    'defects': [str(d) for p in m.walk() for d in p.defects],\n"
    "    'env_from': str(m['x-sandbox-envelope-from']), 'env_to': str(m['x-sandbox-envelope-to']),\n"
    "    'queue_id': str(m['x-sandbox-queue-id']),\n"
    "    'crlf_only': b'\\n' not in raw.replace(b'\\r\\n', b'') and b'\\r' not in raw.replace(b'\\r\\n', b''),\n"
    "    'max_line': max(len(l) for l in raw.split(b'\\r\\n')),\n"
    "    'ascii_headers': all(b < 128 for b in body)}))\n";

static json_object *inspect_message(const fixture_t *fx, int i)
{
    char *raw = th_smtp_message(&fx->smtp, i);
    cr_assert_not_null(raw, "message %d missing", i);
    char path[800];
    snprintf(path, sizeof path, "%s/msg-%d.eml", fx->smtp.dir, i);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs(raw, f);
    fclose(f);
    free(raw);
    static char out[1 << 17];
    char *const argv[] = {"/usr/bin/python3", "-c", (char *)PY_CHECK, path, NULL};
    int rc = th_run(argv, NULL, out, sizeof out, 30000);
    cr_assert_eq(rc, 0, "python could not parse message %d: %s", i, out);
    char err[256];
    json_object *o = cmn_json_parse(out, strlen(out), err, sizeof err);
    cr_assert_not_null(o, "bad python output (%s): %s", err, out);
    return o;
}

/* The parsed message whose envelope recipient is `to` (NULL when none). */
static json_object *find_message(const fixture_t *fx, const char *to)
{
    int n = th_smtp_count(&fx->smtp);
    for (int i = 0; i < n; i++) {
        json_object *o = inspect_message(fx, i);
        if (strcmp(cmn_json_get_string(o, "env_to"), to) == 0)
            return o;
        json_object_put(o);
    }
    return NULL;
}

static json_object *tree_part(json_object *tree, int i)
{
    json_object *parts = cmn_json_get_array(tree, "parts");
    cr_assert_not_null(parts);
    return json_object_array_get_idx(parts, (size_t)i);
}

static const char *str(json_object *o, const char *key)
{
    const char *s = cmn_json_get_string(o, key);
    return s != NULL ? s : "";
}

/* ----------------------------------------------------------------- tests */

Test(email_worker, sends_mime_reports_statuses_and_refuses_bad_input, .timeout = 240)
{
    fixture_t fx;
    fixture_init(&fx, "main");
    /* One attempt each: the retryable refusal ends `dead` here (retries
     * themselves are test_worker_retry.c's). */
    start_worker(&fx, (const char *const[]){"EMAIL_MAX_IN_FLIGHT=4", "RETRY_MAX_ATTEMPTS=1", NULL});

    /* "%PDF-1.4\n% test receipt\n" */
    const char *pdf_b64 = "JVBERi0xLjQKJSB0ZXN0IHJlY2VpcHQK";
    char attachments[256];
    snprintf(attachments, sizeof attachments,
             "[{\"filename\":\"reçu n°42.pdf\",\"content_type\":\"application/pdf\",\"content_base64\":\"%s\"}]",
             pdf_b64);
    dspec_t ok_fr = {"req-fr", NULL, "ana@example.com", "Zoë <Ana> & Co", "fr-CA", "appointment_reminder",
                     "{\"appointment\":{\"date\":\"24/11/2026\",\"time\":\"14 h 30\",\"location\":\"Cabinet <Nord>\"},"
                     "\"company\":{\"name\":\"Clinique Ésope\"}}",
                     NULL};
    dspec_t ok_att = {"req-att", NULL, "bob@example.com", "Bob Smith", "en", "payment_receipt",
                      "{\"amount\":\"€42.00\",\"receipt\":{\"number\":\"R-1001\"}}", attachments};
    dspec_t refused = {"req-550", NULL, "fail550-carol@example.com", "Carol", "en", "welcome", NULL, NULL};
    dspec_t later = {"req-451", NULL, "fail451-dan@example.com", "Dan", "en", "welcome", NULL, NULL};
    dspec_t sms = {"req-sms", "sms", "+14155550100", "Eve", "en", "welcome", NULL, NULL};
    dspec_t inject_ctx = {"req-inject", NULL, "frank@example.com", "Frank", "en", "event_invitation",
                          "{\"event\":{\"name\":\"Gala\\r\\nBcc: victim@evil.example\",\"date\":\"2026-12-05\"}}", NULL};
    dspec_t inject_name = {"req-inject-name", NULL, "grace@example.com", "Grace\r\nBcc: victim@evil.example", "en",
                           "welcome", NULL, NULL};
    dspec_t no_tmpl = {"req-notmpl", NULL, "heidi@example.com", "Heidi", "en", "no_such_type", NULL, NULL};

    produce_dispatch(&fx, &ok_fr);
    produce_dispatch(&fx, &ok_att);
    produce_dispatch(&fx, &refused);
    produce_dispatch(&fx, &later);
    th_worker_produce(&fx.w, "client-1", "{\"v\":1, not json");
    th_worker_produce(&fx.w, "client-1", NULL); /* a tombstone */
    produce_dispatch(&fx, &sms);
    produce_dispatch(&fx, &inject_ctx);
    produce_dispatch(&fx, &inject_name);
    produce_dispatch(&fx, &no_tmpl);

    /* 4 sending (prepared), 2 sent, 3 failed, 1 dead. */
    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 10, &st);
    cr_assert_eq(st.n, 10, "expected 10 status events, got %zu (worker log: %s)", st.n, fx.w.proc.log_path);
    size_t ndlq = 0;
    th_kafka_record_t *dlq = th_kafka_read_all(fx.w.brokers, "crm.dlq", 5, 30000, &ndlq);
    cr_assert_eq(ndlq, 5, "five records on crm.dlq (four unusable, one dead), got %zu", ndlq);
    cr_assert_eq(th_smtp_wait(&fx.smtp, 2, 10000), 2);

    /* ---- the French reminder: fr-CA falls back to fr. */
    json_object *sending = th_status_of(&st, "req-fr", "sending");
    json_object *sent = th_status_of(&st, "req-fr", "sent");
    json_object *m = find_message(&fx, "ana@example.com");
    cr_assert_not_null(m, "the fr message did not arrive");
    cr_expect_str_eq(str(m, "subject"), "Rappel : votre rendez-vous le 24/11/2026 à 14 h 30");
    json_object *from = cmn_json_get_object(m, "from");
    json_object *to = cmn_json_get_object(m, "to");
    cr_expect_str_eq(str(from, "name"), FROM_NAME);
    cr_expect_str_eq(str(from, "addr"), FROM_EMAIL);
    cr_expect_str_eq(str(to, "name"), "Zoë <Ana> & Co");
    cr_expect_str_eq(str(to, "addr"), "ana@example.com");
    cr_expect_str_eq(str(m, "env_from"), FROM_EMAIL);
    cr_expect_str_eq(str(m, "mime_version"), "1.0");
    cr_expect(json_object_get_boolean(json_object_object_get(m, "date_parsed")));
    cr_expect(json_object_get_boolean(json_object_object_get(m, "crlf_only")), "bare CR or LF on the wire");
    cr_expect(json_object_get_boolean(json_object_object_get(m, "ascii_headers")), "8-bit bytes in headers");
    cr_expect_leq(json_object_get_int(json_object_object_get(m, "max_line")), 998);
    cr_expect_eq(json_object_array_length(cmn_json_get_array(m, "defects")), 0, "parser defects: %s",
                 json_object_to_json_string(cmn_json_get_array(m, "defects")));
    json_object *tree = cmn_json_get_object(m, "tree");
    cr_expect_str_eq(str(tree, "type"), "multipart/alternative");
    cr_expect_str_eq(str(tree_part(tree, 0), "type"), "text/plain");
    cr_expect_str_eq(str(tree_part(tree, 0), "charset"), "utf-8");
    cr_expect_str_eq(str(tree_part(tree, 1), "type"), "text/html");
    /* Escaped in HTML only. */
    cr_expect_not_null(strstr(str(m, "text"), "Bonjour Zoë <Ana> & Co,"), "%s", str(m, "text"));
    cr_expect_not_null(strstr(str(m, "text"), "Lieu : Cabinet <Nord>"));
    cr_expect_not_null(strstr(str(m, "text"), "Clinique Ésope"), "footer partial");
    cr_expect_not_null(strstr(str(m, "html"), "Bonjour Zoë &lt;Ana&gt; &amp; Co,"), "%s", str(m, "html"));
    cr_expect_not_null(strstr(str(m, "html"), "Cabinet &lt;Nord&gt;"));
    cr_expect_null(strstr(str(m, "html"), "<Ana>"));
    /* Statuses carry the Message-ID we generated and the server's reply. */
    cr_expect_str_eq(str(sent, "provider_message_id"), str(m, "message_id"));
    cr_expect_str_eq(str(sending, "provider_message_id"), str(m, "message_id"));
    cr_expect_not_null(strstr(str(m, "message_id"), "@crm.example>"), "%s", str(m, "message_id"));
    char reply[128];
    snprintf(reply, sizeof reply, "smtp_reply: 250 2.0.0 Ok: queued as %s", str(m, "queue_id"));
    cr_expect_str_eq(str(sent, "reason"), reply);
    cr_expect_str_eq(str(sent, "provider"), "smtp");
    cr_expect_str_eq(str(sent, "channel"), "email");
    cr_expect_str_eq(str(sent, "message_type"), "appointment_reminder");
    cr_expect_eq(json_object_get_int(json_object_object_get(sent, "attempt")), 1);
    cr_expect_eq(json_object_get_int(json_object_object_get(sent, "hop")), 0);
    cr_expect_null(cmn_json_get_string(sent, "error_message"));
    json_object_put(m);

    /* ---- the receipt with an attachment. */
    th_status_of(&st, "req-att", "sending");
    th_status_of(&st, "req-att", "sent");
    m = find_message(&fx, "bob@example.com");
    cr_assert_not_null(m, "the receipt did not arrive");
    cr_expect_str_eq(str(m, "subject"), "Payment received: €42.00");
    tree = cmn_json_get_object(m, "tree");
    cr_expect_str_eq(str(tree, "type"), "multipart/mixed");
    cr_expect_str_eq(str(tree_part(tree, 0), "type"), "multipart/alternative");
    cr_expect_str_eq(str(tree_part(tree, 1), "type"), "application/pdf");
    json_object *atts = cmn_json_get_array(m, "attachments");
    cr_assert_eq(json_object_array_length(atts), 1);
    json_object *a0 = json_object_array_get_idx(atts, 0);
    cr_expect_str_eq(str(a0, "filename"), "reçu n°42.pdf");
    cr_expect_str_eq(str(a0, "b64"), pdf_b64, "attachment bytes changed in transit");
    json_object_put(m);

    /* ---- SMTP refusals: 550 permanent, 451 retryable (dead after its one attempt). */
    th_status_of(&st, "req-550", "sending");
    json_object *f550 = th_status_of(&st, "req-550", "failed");
    cr_expect_str_eq(str(f550, "error_code"), "550");
    cr_expect(strncmp(str(f550, "error_message"), "550 5.1.1", 9) == 0, "%s", str(f550, "error_message"));
    cr_expect_str_eq(str(f550, "provider"), "smtp");
    json_object *f451 = th_status_of(&st, "req-451", "dead");
    cr_expect_str_eq(str(f451, "error_code"), "451");
    cr_expect_str_eq(str(f451, "reason"), "attempts_exhausted");
    cr_expect_not_null(strstr(str(f451, "error_message"), "451 4.3.0"), "%s", str(f451, "error_message"));

    /* ---- problems found before sending: failed at once, no sending, nothing sent. */
    json_object *finj = th_status_of(&st, "req-inject", "failed");
    cr_expect_str_eq(str(finj, "error_code"), "header_injection");
    cr_expect_str_eq(str(finj, "error_message"), "subject contains CR or LF");
    cr_expect_eq(th_status_count(&st, "req-inject", "sending"), 0);
    json_object *fnt = th_status_of(&st, "req-notmpl", "failed");
    cr_expect_str_eq(str(fnt, "error_code"), "no_template");
    cr_expect_eq(th_status_count(&st, "req-inject-name", NULL), 0);
    cr_expect_eq(th_status_count(&st, "req-sms", NULL), 0);
    /* Only the two good messages reached the server: no "cleaned" copy of
     * an injection attempt was sent. */
    cr_expect_eq(th_smtp_count(&fx.smtp), 2);

    /* ---- the DLQ: malformed JSON, a tombstone, another channel, a
     * recipient name with CR/LF (refused by Dispatch validation, before any
     * rendering), and the dead 451. */
    const char *const reasons[] = {"malformed JSON", "empty record", "wrong channel: a sms dispatch", "recipient.name",
                                   "retries exhausted: 1 attempts on email, last error 451", NULL};
    int seen[5];
    th_worker_check_dlq(&fx.w, dlq, ndlq, "crm-email-worker", "client-1", reasons, seen);
    for (size_t k = 0; reasons[k] != NULL; k++)
        cr_expect_eq(seen[k], 1, "%s", reasons[k]);
    th_kafka_records_free(dlq, ndlq);

    /* Status events keep the trace of the dispatch. */
    th_statuses_expect_traced(&fx.w, &st);
    th_statuses_free(&st);

    /* Metrics. */
    static char body[1 << 16];
    cr_expect_eq(th_worker_metrics(&fx.w, body, sizeof body), 200);
    cr_expect_not_null(strstr(body, "email_sent_total 2"), "%s", body);
    cr_expect_not_null(strstr(body, "email_failed_total{class=\"permanent\"} 3"), "%s", body);
    cr_expect_not_null(strstr(body, "email_failed_total{class=\"retryable\"} 1"), "%s", body);
    cr_expect_not_null(strstr(body, "email_send_seconds_count 4"), "%s", body);

    /* Addresses never reach the log. */
    const char *logbuf = th_worker_log(&fx.w);
    cr_expect_null(strstr(logbuf, "ana@example.com"), "an address was logged");
    cr_expect_null(strstr(logbuf, "fail550-carol"), "an address was logged");
    cr_expect_null(strstr(logbuf, fx.smtp.password), "the SMTP password was logged");

    cr_expect_eq(th_worker_stop(&fx.w), 0, "exit status after SIGTERM; see %s", fx.w.proc.log_path);
    fixture_fini(&fx);
}

Test(email_worker, tls_verification_and_auth_are_enforced, .timeout = 240)
{
    fixture_t fx;
    fixture_init(&fx, "tls");
    /* Without the sandbox's CA the certificate cannot be verified, and the
     * worker must refuse to talk rather than send in the clear or unverified.
     * A second worker, side by side, has a wrong password. */
    start_worker(&fx, (const char *const[]){"SMTP_CA_FILE=", "RETRY_MAX_ATTEMPTS=1", NULL});
    th_worker_t wrong;
    start_side_worker(&fx, &wrong, "tls-password", (const char *const[]){"SMTP_PASSWORD=wrong-password", NULL});
    dspec_t d1 = {"tls-1", NULL, "ivan@example.com", "Ivan", "en", "welcome", NULL, NULL};
    produce_dispatch(&fx, &d1);
    th_dispatch_t d2 = {.tenant = TENANT, .request_id = "tls-2", .channel = "email", .to = "judy@example.com",
                        .name = "Judy", .locale = "en", .message_type = "welcome"};
    th_worker_produce_dispatch(&wrong, &d2);

    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 2, &st);
    json_object *f = th_status_of(&st, "tls-1", "dead");
    cr_expect_str_eq(str(f, "error_code"), "tls_error");
    cr_expect_str_eq(str(f, "reason"), "attempts_exhausted");
    th_statuses_free(&st);
    cr_expect_eq(th_worker_stop(&fx.w), 0);

    /* A wrong password: the server's 535 is a permanent failure. */
    th_worker_read_statuses(&wrong, 2, &st);
    f = th_status_of(&st, "tls-2", "failed");
    cr_expect_str_eq(str(f, "error_code"), "535");
    cr_expect_not_null(strstr(str(f, "error_message"), "535"), "%s", str(f, "error_message"));
    th_statuses_free(&st);
    cr_expect_eq(th_smtp_count(&fx.smtp), 0, "nothing may be delivered");
    cr_expect_eq(th_worker_stop(&wrong), 0);
    side_worker_fini(&wrong);
    fixture_fini(&fx);
}

/* ------------------------------------------------------------- tracking */

#define TRACK_KEY "tracking-key-for-tests-0123456789abcdef"
#define TRACK_BASE "https://hooks.example.test"

/* A template set that exercises the rewriter: a tracked link from the
 * data, one with single quotes and upper-case names, links that must stay
 * (mailto, tel, fragment, an opt-out) and the visible unsubscribe link. */
static const char NEWS_HTML[] =
    "<!DOCTYPE html>\n<html><body>\n<p>{{headline}}</p>\n"
    "<p><a href=\"{{offer_url}}\">Offer</a></p>\n"
    "<p><A HREF='https://crm.example/b'>Single</A></p>\n"
    "<p><a href=\"mailto:help@crm.example\">Mail us</a> <a href=\"tel:+14155550100\">Call</a> "
    "<a href=\"#top\">Top</a></p>\n"
    "<p><a href=\"https://crm.example/private\" data-crm-notrack>Private</a></p>\n"
    "<p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>\n"
    "</body></html>\n";
static const char NEWS_TEXT[] = "{{headline}}\nOffer: {{offer_url}}\nUnsubscribe: {{unsubscribe_url}}\n";
static const char NEWS_CONTEXT[] = "{\"headline\":\"Spring news\",\"offer_url\":\"https://crm.example/offer?a=1&b=2\","
                                   "\"unsubscribe_url\":\"https://evil.example/steal\"}";

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[900];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* <smtp dir>/tpl with the "newsletter" set and links to the shipped
 * password_reset set and partials; its path into out. */
static void make_templates(const fixture_t *fx, char *out, size_t outlen)
{
    char d[800], link[900], target[800];
    snprintf(out, outlen, "%s/tpl", fx->smtp.dir);
    mkdir(out, 0700);
    snprintf(d, sizeof d, "%s/newsletter", out);
    mkdir(d, 0700);
    snprintf(d, sizeof d, "%s/newsletter/en", out);
    mkdir(d, 0700);
    write_file(d, "subject.mustache", "{{headline}}\n");
    write_file(d, "body.txt.mustache", NEWS_TEXT);
    write_file(d, "body.html.mustache", NEWS_HTML);
    const char *shipped[] = {"password_reset", "_partials"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(link, sizeof link, "%s/%s", out, shipped[i]);
        snprintf(target, sizeof target, "%s/templates/%s", CRM_SOURCE_DIR, shipped[i]);
        unlink(link);
        cr_assert_eq(symlink(target, link), 0, "symlink %s", link);
    }
}

/* The message to `to`, inspected by tests/tools/track_inspect.py with the
 * test's key and base URL. The caller puts the result. */
static json_object *track_inspect(const fixture_t *fx, const char *to)
{
    int n = th_smtp_count(&fx->smtp);
    char want[200];
    snprintf(want, sizeof want, "X-Sandbox-Envelope-To: %s\r\n", to);
    for (int i = 0; i < n; i++) {
        char *raw = th_smtp_message(&fx->smtp, i);
        cr_assert_not_null(raw);
        if (strstr(raw, want) == NULL) {
            free(raw);
            continue;
        }
        char path[800], script[700];
        snprintf(path, sizeof path, "%s/track-%d.eml", fx->smtp.dir, i);
        FILE *f = fopen(path, "wb");
        cr_assert_not_null(f);
        fputs(raw, f);
        fclose(f);
        free(raw);
        snprintf(script, sizeof script, "%s/tests/tools/track_inspect.py", CRM_SOURCE_DIR);
        static char out[1 << 17];
        char *const argv[] = {"/usr/bin/python3", script, "message", TRACK_KEY, TRACK_BASE, path, NULL};
        int rc = th_run(argv, NULL, out, sizeof out, 30000);
        cr_assert_eq(rc, 0, "track_inspect failed: %s", out);
        char err[256];
        json_object *o = cmn_json_parse(out, strlen(out), err, sizeof err);
        cr_assert_not_null(o, "bad track_inspect output (%s): %s", err, out);
        return o;
    }
    cr_assert_fail("no message to %s", to);
    return NULL;
}

/* Expects a decoded token (track_inspect's JSON) to be valid, of `kind`,
 * and to name the communication of request_id at hop. */
static void expect_token(json_object *tok, const char *kind, const char *request_id, int hop)
{
    cr_assert_not_null(tok, "no token");
    cr_assert_null(cmn_json_get_string(tok, "error"), "token refused by the independent decoder: %s",
                   json_object_to_json_string(tok));
    char comm[CMN_UUID_STR_LEN + 1];
    th_worker_comm_id(TENANT, request_id, comm);
    cr_expect_str_eq(str(tok, "kind"), kind);
    cr_expect_str_eq(str(tok, "communication_id"), comm);
    cr_expect_str_eq(str(tok, "tenant_id"), TENANT);
    cr_expect_str_eq(str(tok, "client_id"), "client-1");
    cr_expect_eq(json_object_get_int(json_object_object_get(tok, "hop")), hop);
    cr_expect_eq(json_object_get_int(json_object_object_get(tok, "channel")), 0, "email");
    cr_expect_eq(json_object_get_int(json_object_object_get(tok, "expires_at")), 0, "no expiry");
}

static json_object *link_at(json_object *m, size_t i)
{
    json_object *links = cmn_json_get_array(m, "links");
    cr_assert_not_null(links);
    cr_assert_lt(i, json_object_array_length(links), "only %zu links", json_object_array_length(links));
    return json_object_array_get_idx(links, i);
}

Test(email_worker, tracking_links_and_list_unsubscribe, .timeout = 300)
{
    fixture_t fx;
    fixture_init(&fx, "track");
    char tpl[700], tpl_env[720];
    make_templates(&fx, tpl, sizeof tpl);
    snprintf(tpl_env, sizeof tpl_env, "EMAIL_TEMPLATES_DIR=%s", tpl);

    /* Four configurations, each its own worker, side by side (see
     * start_side_worker); each sends to its own recipients. */
    /* ---- everything on (the base URL given with a trailing slash). */
    start_worker(&fx, (const char *const[]){tpl_env, "TRACKING_BASE_URL=" TRACK_BASE "/",
                                            "CRM_TRACKING_KEY=" TRACK_KEY, "UNSUBSCRIBE_MAILTO=unsubscribe@crm.example",
                                            NULL});
    /* ---- only UNSUBSCRIBE_MAILTO. */
    th_worker_t w_mailto, w_off, w_none;
    start_side_worker(&fx, &w_mailto, "track-mailto",
                      (const char *const[]){tpl_env, "CRM_TRACKING_KEY=" TRACK_KEY,
                                            "UNSUBSCRIBE_MAILTO=unsubscribe@crm.example", NULL});
    /* ---- base URL with opens and clicks off. */
    start_side_worker(&fx, &w_off, "track-off",
                      (const char *const[]){tpl_env, "TRACKING_BASE_URL=" TRACK_BASE, "CRM_TRACKING_KEY=" TRACK_KEY,
                                            "EMAIL_TRACK_OPENS=false", "EMAIL_TRACK_CLICKS=false", NULL});
    /* ---- nothing configured. */
    start_side_worker(&fx, &w_none, "track-none", (const char *const[]){tpl_env, NULL});

    dspec_t news = {"trk-news", NULL, "nina@example.com", "Nina", "en", "newsletter", NEWS_CONTEXT, NULL};
    th_dispatch_t reset = {.tenant = TENANT, .request_id = "trk-reset", .channel = "email", .to = "omar@example.com",
                           .name = "Omar", .locale = "en", .message_type = "password_reset",
                           .context = "{\"reset_url\":\"https://crm.example/reset?t=abc&u=1\"}", .hop = 1};
    produce_dispatch(&fx, &news);
    th_worker_produce_dispatch(&fx.w, &reset);
    const th_dispatch_t news2 = {.tenant = TENANT, .request_id = "trk-mailto", .channel = "email",
                                 .to = "pia@example.com", .name = "Pia", .locale = "en",
                                 .message_type = "newsletter", .context = NEWS_CONTEXT};
    const th_dispatch_t news3 = {.tenant = TENANT, .request_id = "trk-off", .channel = "email",
                                 .to = "quinn@example.com", .name = "Quinn", .locale = "en",
                                 .message_type = "newsletter", .context = NEWS_CONTEXT};
    const th_dispatch_t news4 = {.tenant = TENANT, .request_id = "trk-none", .channel = "email",
                                 .to = "rui@example.com", .name = "Rui", .locale = "en",
                                 .message_type = "newsletter", .context = NEWS_CONTEXT};
    th_worker_produce_dispatch(&w_mailto, &news2);
    th_worker_produce_dispatch(&w_off, &news3);
    th_worker_produce_dispatch(&w_none, &news4);
    cr_assert_eq(th_smtp_wait(&fx.smtp, 5, 60000), 5, "logs: %s %s %s %s", fx.w.proc.log_path,
                 w_mailto.proc.log_path, w_off.proc.log_path, w_none.proc.log_path);
    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 4, &st);
    th_status_of(&st, "trk-news", "sent");
    th_status_of(&st, "trk-reset", "sent");
    th_statuses_free(&st);

    json_object *m = track_inspect(&fx, "nina@example.com");
    cr_expect_eq(json_object_array_length(cmn_json_get_array(m, "defects")), 0, "%s",
                 json_object_to_json_string(cmn_json_get_array(m, "defects")));
    /* List-Unsubscribe: the https URI first, then mailto, one token. */
    json_object *uris = cmn_json_get_array(m, "list_unsubscribe");
    cr_assert_eq(json_object_array_length(uris), 2, "%s", str(m, "list_unsubscribe_raw"));
    json_object *unsub = cmn_json_get_object(m, "unsubscribe");
    const char *https = str(unsub, "https");
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(uris, 0)), https);
    cr_expect_eq(strncmp(https, TRACK_BASE "/u/", strlen(TRACK_BASE "/u/")), 0, "%s", https);
    cr_expect_str_eq(str(unsub, "mailto_address"), "unsubscribe@crm.example");
    expect_token(cmn_json_get_object(unsub, "https_token"), "unsubscribe", "trk-news", 0);
    expect_token(cmn_json_get_object(unsub, "mailto_token"), "unsubscribe", "trk-news", 0);
    cr_expect_str_eq(str(m, "list_unsubscribe_post"), "List-Unsubscribe=One-Click");
    /* The HTML: two tracked links, the others as written, the visible
     * unsubscribe link is the signed page (the producer's was dropped). */
    const char *want_href[] = {NULL, NULL, "mailto:help@crm.example", "tel:+14155550100", "#top",
                               "https://crm.example/private", https};
    const char *want_target[] = {"https://crm.example/offer?a=1&b=2", "https://crm.example/b"};
    cr_assert_eq(json_object_array_length(cmn_json_get_array(m, "links")), 7, "%s", str(m, "html"));
    for (size_t i = 0; i < 7; i++) {
        json_object *l = link_at(m, i);
        json_object *click = cmn_json_get_object(l, "click");
        if (i < 2) {
            expect_token(click, "click", "trk-news", 0);
            cr_expect_str_eq(str(click, "target"), want_target[i], "link %zu", i);
            cr_expect_eq(json_object_get_int(json_object_object_get(click, "link_index")), (int)i);
        } else {
            cr_expect_null(click, "link %zu should not be tracked", i);
            cr_expect_str_eq(str(l, "href"), want_href[i], "link %zu", i);
        }
    }
    json_object *pixels = cmn_json_get_array(m, "pixels");
    cr_assert_eq(json_object_array_length(pixels), 1, "%s", str(m, "html"));
    expect_token(json_object_array_get_idx(pixels, 0), "open", "trk-news", 0);
    /* The text part keeps its links as written, and shows the page. */
    char line[1200];
    snprintf(line, sizeof line, "Unsubscribe: %s", https);
    cr_expect_not_null(strstr(str(m, "text"), "Offer: https://crm.example/offer?a=1&b=2"), "%s", str(m, "text"));
    cr_expect_not_null(strstr(str(m, "text"), line), "%s", str(m, "text"));
    cr_expect_null(strstr(str(m, "text"), "/t/c/"));
    cr_expect_null(strstr(str(m, "html"), "evil.example"));
    cr_expect_null(strstr(str(m, "text"), "evil.example"));
    json_object_put(m);

    /* The shipped password reset, on a fallback hop: the hop travels in
     * every token. Its button is marked data-crm-notrack (templates, commit
     * ed698bc) so the reset secret never passes through the click
     * redirector: the href stays the original URL, the escaped &amp; read
     * back as &. */
    m = track_inspect(&fx, "omar@example.com");
    expect_token(cmn_json_get_object(cmn_json_get_object(m, "unsubscribe"), "https_token"), "unsubscribe",
                 "trk-reset", 1);
    json_object *reset_link = link_at(m, 0);
    cr_expect_null(cmn_json_get_object(reset_link, "click"), "the reset link is not tracked");
    cr_expect_str_eq(str(reset_link, "href"), "https://crm.example/reset?t=abc&u=1");
    cr_assert_eq(json_object_array_length(cmn_json_get_array(m, "pixels")), 1);
    expect_token(json_object_array_get_idx(cmn_json_get_array(m, "pixels"), 0), "open", "trk-reset", 1);
    cr_expect_str_eq(str(m, "list_unsubscribe_post"), "List-Unsubscribe=One-Click");
    json_object_put(m);
    const char *forbidden[] = {TRACK_KEY, "nina@example.com", NULL};
    th_worker_expect_clean_log(&fx.w, forbidden);
    cr_expect_eq(th_worker_stop(&fx.w), 0);

    /* ---- only UNSUBSCRIBE_MAILTO: List-Unsubscribe with the mailto URI,
     * no one-click (it needs an https URI), no pixel, links untouched; the
     * visible link is the mailto URI. */
    m = track_inspect(&fx, "pia@example.com");
    uris = cmn_json_get_array(m, "list_unsubscribe");
    cr_assert_eq(json_object_array_length(uris), 1, "%s", str(m, "list_unsubscribe_raw"));
    unsub = cmn_json_get_object(m, "unsubscribe");
    expect_token(cmn_json_get_object(unsub, "mailto_token"), "unsubscribe", "trk-mailto", 0);
    cr_expect_str_eq(str(m, "list_unsubscribe_post"), "", "no one-click without an https URI");
    cr_expect_eq(json_object_array_length(cmn_json_get_array(m, "pixels")), 0);
    cr_expect_str_eq(str(link_at(m, 0), "href"), "https://crm.example/offer?a=1&b=2");
    cr_expect_str_eq(str(link_at(m, 6), "href"), str(unsub, "mailto"));
    json_object_put(m);
    cr_expect_eq(th_worker_stop(&w_mailto), 0);

    /* ---- base URL with opens and clicks off: List-Unsubscribe and the
     * one-click header stay, the HTML is not rewritten. */
    m = track_inspect(&fx, "quinn@example.com");
    cr_expect_eq(json_object_array_length(cmn_json_get_array(m, "list_unsubscribe")), 1);
    expect_token(cmn_json_get_object(cmn_json_get_object(m, "unsubscribe"), "https_token"), "unsubscribe", "trk-off",
                 0);
    cr_expect_str_eq(str(m, "list_unsubscribe_post"), "List-Unsubscribe=One-Click");
    cr_expect_eq(json_object_array_length(cmn_json_get_array(m, "pixels")), 0);
    cr_expect_str_eq(str(link_at(m, 0), "href"), "https://crm.example/offer?a=1&b=2");
    json_object_put(m);
    cr_expect_eq(th_worker_stop(&w_off), 0);

    /* ---- nothing configured: no header, no tracking, and a warning. */
    m = track_inspect(&fx, "rui@example.com");
    cr_expect_str_eq(str(m, "list_unsubscribe_raw"), "");
    cr_expect_str_eq(str(m, "list_unsubscribe_post"), "");
    cr_expect_eq(json_object_array_length(cmn_json_get_array(m, "pixels")), 0);
    cr_expect_str_eq(str(link_at(m, 0), "href"), "https://crm.example/offer?a=1&b=2");
    cr_expect_str_eq(str(link_at(m, 6), "href"), "", "no unsubscribe link without a way to unsubscribe");
    json_object_put(m);
    cr_expect_not_null(strstr(th_worker_log(&w_none), "no List-Unsubscribe header"), "no warning at start");
    cr_expect_eq(th_worker_stop(&w_none), 0);
    side_worker_fini(&w_mailto);
    side_worker_fini(&w_off);
    side_worker_fini(&w_none);
    fixture_fini(&fx);
}

Test(email_worker, bad_configuration_stops_at_start)
{
    char bin[512], out[4096];
    cr_assert_not_null(th_bin("crm-email-worker", bin, sizeof bin));
    char *const argv[] = {bin, NULL};
    char *const env1[] = {"SMTP_HOST=smtp.example.com", "SMTP_FROM_EMAIL=not-an-address", "KAFKA_BROKERS=127.0.0.1:1",
                          NULL};
    int rc = th_run(argv, env1, out, sizeof out, 30000);
    cr_expect_eq(rc, 2, "exit code %d: %s", rc, out);
    cr_expect_not_null(strstr(out, "SMTP_FROM_EMAIL"), "%s", out);

    char *const env0[] = {"SMTP_HOST=", "SMTP_FROM_EMAIL=a@b.example", NULL};
    rc = th_run(argv, env0, out, sizeof out, 30000);
    cr_expect_eq(rc, 2, "exit code %d: %s", rc, out);
    cr_expect_not_null(strstr(out, "SMTP_HOST"), "%s", out);

    char *const env2[] = {"SMTP_HOST=smtp.example.com", "SMTP_FROM_EMAIL=a@b.example", "SMTP_USERNAME=u",
                          "SMTP_USE_TLS=false", "SMTP_PORT=587", NULL};
    rc = th_run(argv, env2, out, sizeof out, 30000);
    cr_expect_eq(rc, 2, "AUTH without TLS must not start: %s", out);
    cr_expect_not_null(strstr(out, "SMTP_USE_TLS"), "%s", out);

    /* Tracking: a key is required as soon as anything is signed, and the
     * base URL must be one tokens can be appended to. */
    struct {
        const char *a, *b, *names;
    } tracking[] = {
        {"TRACKING_BASE_URL=https://hooks.example.com", "CRM_TRACKING_KEY=", "CRM_TRACKING_KEY"},
        {"UNSUBSCRIBE_MAILTO=unsubscribe@example.com", "CRM_TRACKING_KEY=too-short", "CRM_TRACKING_KEY"},
        {"TRACKING_BASE_URL=ftp://hooks.example.com", "CRM_TRACKING_KEY=" TRACK_KEY, "TRACKING_BASE_URL"},
        {"TRACKING_BASE_URL=https://hooks.example.com/?x=1", "CRM_TRACKING_KEY=" TRACK_KEY, "TRACKING_BASE_URL"},
        {"UNSUBSCRIBE_MAILTO=not an address", "CRM_TRACKING_KEY=" TRACK_KEY, "UNSUBSCRIBE_MAILTO"},
    };
    for (size_t i = 0; i < sizeof tracking / sizeof tracking[0]; i++) {
        char *const envt[] = {"SMTP_HOST=smtp.example.com", "SMTP_FROM_EMAIL=a@b.example", "KAFKA_BROKERS=127.0.0.1:1",
                              (char *)tracking[i].a, (char *)tracking[i].b, NULL};
        rc = th_run(argv, envt, out, sizeof out, 30000);
        cr_expect_eq(rc, 2, "%s %s: exit code %d: %s", tracking[i].a, tracking[i].b, rc, out);
        cr_expect_not_null(strstr(out, tracking[i].names), "%s", out);
    }

    char *const env3[] = {"SMTP_HOST=smtp.example.com", "SMTP_FROM_EMAIL=a@b.example", "SMTP_PASSWORD=hunter2-secret",
                          "CRM_TRACKING_KEY=" TRACK_KEY, NULL};
    char *const argv_print[] = {bin, "--print-config", NULL};
    rc = th_run(argv_print, env3, out, sizeof out, 30000);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect_not_null(strstr(out, "SMTP_HOST=smtp.example.com"), "%s", out);
    cr_expect_not_null(strstr(out, "HTTP_PORT=9102"), "%s", out);
    cr_expect_null(strstr(out, "hunter2-secret"), "the password was printed");
    cr_expect_null(strstr(out, TRACK_KEY), "the tracking key was printed");
    cr_expect_not_null(strstr(out, "CRM_TRACKING_KEY=<redacted>"), "%s", out);
}

Test(email_worker, many_messages_in_flight, .timeout = 240)
{
    enum { N = 60 };
    fixture_t fx;
    fixture_init(&fx, "many");
    start_worker(&fx, (const char *const[]){"EMAIL_MAX_IN_FLIGHT=8", "EMAIL_BATCH_SIZE=100", NULL});
    int64_t t0 = cmn_monotonic_ms();
    for (int i = 0; i < N; i++) {
        char rid[32], to[64];
        snprintf(rid, sizeof rid, "bulk-%03d", i);
        snprintf(to, sizeof to, "client%03d@example.com", i);
        dspec_t d = {rid, NULL, to, "Client", i % 2 ? "de" : "es", i % 3 ? "welcome" : "password_reset",
                     "{\"reset_url\":\"https://crm.example/r?t=1\",\"login_url\":\"https://crm.example/\"}", NULL};
        produce_dispatch(&fx, &d);
    }
    cr_assert_eq(th_smtp_wait(&fx.smtp, N, 120000), N, "not every message arrived (log %s)", fx.w.proc.log_path);
    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 2 * N, &st);
    cr_assert_eq(st.n, 2 * N);
    for (int i = 0; i < N; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "bulk-%03d", i);
        th_status_of(&st, rid, "sending");
        th_status_of(&st, rid, "sent");
    }
    /* Every Message-ID differs. */
    for (size_t i = 0; i < st.n; i++) {
        if (strcmp(str(st.objs[i], "status"), "sent") != 0)
            continue;
        for (size_t k = i + 1; k < st.n; k++) {
            if (strcmp(str(st.objs[k], "status"), "sent") == 0)
                cr_assert_str_neq(str(st.objs[i], "provider_message_id"), str(st.objs[k], "provider_message_id"));
        }
    }
    cr_log_info("%d emails through STARTTLS+AUTH in %lld ms", N, (long long)(cmn_monotonic_ms() - t0));
    th_statuses_free(&st);
    cr_expect_eq(th_worker_stop(&fx.w), 0);
    fixture_fini(&fx);
}

Test(email_worker, sigterm_finishes_the_batch_in_hand, .timeout = 240)
{
    enum { N = 12 };
    fixture_t fx;
    fixture_init(&fx, "sigterm");
    /* The first message's DATA reply comes 3 s late (scripted by the
     * sandbox), so SIGTERM reliably lands while it is in flight. */
    dspec_t slow = {"term-slow", NULL, "slow3000-first@example.com", "Client", "en", "welcome", NULL, NULL};
    produce_dispatch(&fx, &slow);
    for (int i = 0; i < N; i++) {
        char rid[32], to[64];
        snprintf(rid, sizeof rid, "term-%03d", i);
        snprintf(to, sizeof to, "term%03d@example.com", i);
        dspec_t d = {rid, NULL, to, "Client", "en", "welcome", NULL, NULL};
        produce_dispatch(&fx, &d);
    }
    start_worker(&fx, (const char *const[]){"EMAIL_MAX_IN_FLIGHT=2", NULL});

    /* `sending` is emitted just before the transfers start. */
    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 1, &st);
    cr_assert_geq(st.n, 1, "no status before the signal");
    th_statuses_free(&st);
    int64_t signalled_at = cmn_now_ms();
    cr_expect_eq(th_worker_stop(&fx.w), 0, "exit status after SIGTERM; see %s", fx.w.proc.log_path);
    int after_stop = th_smtp_count(&fx.smtp);
    cr_log_info("%d of %d messages sent before the worker exited", after_stop, N + 1);

    /* The slow message was in flight at the signal: the worker finished it
     * and reported it before exiting. Everything started has its outcome. */
    th_worker_read_statuses(&fx.w, (size_t)(2 * after_stop), &st);
    json_object *slow_sent = th_status_of(&st, "term-slow", "sent");
    int64_t sent_at = 0;
    cr_assert_eq(cmn_time_parse_rfc3339(str(slow_sent, "occurred_at"), &sent_at), 0);
    cr_expect_geq(sent_at, signalled_at, "the slow message should have completed after the signal");
    cr_expect_eq(th_status_count(&st, "term-slow", "sending"), 1);
    for (int i = 0; i < N; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "term-%03d", i);
        cr_expect_eq(th_status_count(&st, rid, "sending"), th_status_count(&st, rid, "sent"), "%s", rid);
    }
    th_statuses_free(&st);

    /* A new worker picks up exactly where the first one committed: every
     * message arrives once. */
    start_worker(&fx, NULL);
    cr_assert_eq(th_smtp_wait(&fx.smtp, N + 1, 120000), N + 1);
    th_worker_read_statuses(&fx.w, 2 * (N + 1), &st);
    cr_expect_eq(th_status_count(&st, "term-slow", "sent"), 1, "the slow message was sent again");
    for (int i = 0; i < N; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "term-%03d", i);
        cr_expect_eq(th_status_count(&st, rid, "sent"), 1, "%s sent %d times", rid, th_status_count(&st, rid, "sent"));
    }
    th_statuses_free(&st);
    /* Every record done and committed: a duplicate would be here by now. */
    wait_committed(&fx.w);
    cr_expect_eq(th_smtp_count(&fx.smtp), N + 1, "a message was sent twice");
    cr_expect_eq(th_worker_stop(&fx.w), 0);
    fixture_fini(&fx);
}
