/* Integration tests of crm-webhook-receiver: the real binary (th_proc)
 * against a librdkafka mock cluster (th_kafka) and a private PostgreSQL
 * with every migration (th_pg), over real HTTP.
 *
 * Signatures are made by tests/tools/webhook_sign.py (Python's hmac,
 * hashlib and base64), never by the receiver's code. Email tracking tokens
 * are made by crm/track.h, the email worker's encoder. Every webhook
 * example of ../shared/oracles goes through the receiver here. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crm/buf.h"
#include "crm/crypto.h"
#include "crm/json.h"
#include "crm/track.h"
#include "th_kafka.h"
#include "th_pg.h"
#include "th_proc.h"

#define SIGNER CRM_SOURCE_DIR "/tests/tools/webhook_sign.py"
#define TWILIO_ORACLE CRM_SHARED_DIR "/oracles/twilio/webhook_and_error_examples.json"
#define META_ORACLE CRM_SHARED_DIR "/oracles/meta/cloud_api_examples.json"
#define PUBLIC "https://hooks.example.com"
#define TOKEN "twilio-auth-token-for-tests"
#define APP_SECRET "meta-app-secret-for-tests"
#define VERIFY "meta-verify-token-for-tests"
#define DATA_KEY "data-key-for-tests-0123456789abcdef0123"
#define TRACK_KEY "tracking-key-for-tests-0123456789abcdef"
#define HELP "Acme: reply STOP to opt out. Help at acme.example"
#define CID "0b0f5a3e-8f0e-5a7c-9d1b-2a3b4c5d6e7f"
#define KNOWN_PHONE "+14155550100"

typedef struct fixture {
    th_kafka_t *kafka;
    const char *brokers;
    char db[512];
    th_proc_t proc;
    int port;
    int running;
    char base[64];
} fixture_t;

static void start(fixture_t *f, const char *dbname)
{
    char bin[512], brokers_env[512], port_env[32], db_env[600];
    memset(f, 0, sizeof *f);
    f->kafka = th_kafka_start(1);
    cr_assert_not_null(f->kafka, "mock cluster did not start");
    f->brokers = th_kafka_bootstraps(f->kafka);
    cr_assert_eq(th_pg_database(dbname, f->db, sizeof f->db), 0, "no PostgreSQL");
    cr_assert_not_null(th_bin("crm-webhook-receiver", bin, sizeof bin), "crm-webhook-receiver is not built");
    f->port = th_free_port();
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d", f->port);
    snprintf(brokers_env, sizeof brokers_env, "KAFKA_BROKERS=%s", f->brokers);
    snprintf(port_env, sizeof port_env, "HTTP_PORT=%d", f->port);
    snprintf(db_env, sizeof db_env, "DATABASE_URL=%s", f->db);
    char *env[] = {brokers_env,
                   port_env,
                   db_env,
                   "HTTP_BIND=127.0.0.1",
                   "HTTP_THREADS=4",
                   "LOG_LEVEL=debug",
                   "WEBHOOK_PUBLIC_URL=" PUBLIC "/",
                   "TWILIO_AUTH_TOKEN=" TOKEN,
                   "WHATSAPP_APP_SECRET=" APP_SECRET,
                   "WHATSAPP_WEBHOOK_VERIFY_TOKEN=" VERIFY,
                   "CRM_DATA_KEY=" DATA_KEY,
                   "CRM_TRACKING_KEY=" TRACK_KEY,
                   "SMS_HELP_TEXT=" HELP,
                   NULL};
    char *argv[] = {bin, NULL};
    cr_assert_eq(th_proc_start(&f->proc, "crm-webhook-receiver", argv, env), 0);
    f->running = 1;
    cr_assert_eq(th_proc_wait_ready(&f->proc, f->port, 15000), 0, "not ready; see %s", f->proc.log_path);
}

static void stop(fixture_t *f)
{
    if (f->running) {
        int status = th_proc_stop(&f->proc, SIGTERM, 20000);
        f->running = 0;
        cr_expect(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "did not exit 0 on SIGTERM (status %d); see %s", status, f->proc.log_path);
    }
    th_kafka_stop(f->kafka);
}

/* ------------------------------------------------------------ HTTP client */

typedef struct http_result {
    long status;
    char body[16384];
    size_t body_len;
    char headers[8192];
    size_t headers_len;
} http_result_t;

static size_t sink(char *ptr, size_t n, char *buf, size_t cap, size_t *len)
{
    size_t room = cap - 1 - *len;
    size_t take = n < room ? n : room;
    memcpy(buf + *len, ptr, take);
    *len += take;
    buf[*len] = '\0';
    return n;
}

static size_t body_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    http_result_t *r = userdata;
    return sink(ptr, size * nmemb, r->body, sizeof r->body, &r->body_len);
}

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    http_result_t *r = userdata;
    return sink(ptr, size * nmemb, r->headers, sizeof r->headers, &r->headers_len);
}

static void http(const fixture_t *f, const char *method, const char *path_query, const char *body,
                 const char *content_type, const char *extra_header, http_result_t *r)
{
    char url[4096], ct[128];
    struct curl_slist *hdrs = NULL;
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    memset(r, 0, sizeof *r);
    snprintf(url, sizeof url, "%s%s", f->base, path_query);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type != NULL ? content_type : "");
    hdrs = curl_slist_append(hdrs, ct);
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (extra_header != NULL)
        hdrs = curl_slist_append(hdrs, extra_header);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CURLcode cc = curl_easy_perform(c);
    cr_assert_eq(cc, CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror(cc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
}

static const char *header(const http_result_t *r, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    out[0] = '\0';
    for (const char *line = r->headers; line != NULL && *line != '\0';) {
        const char *eol = strstr(line, "\r\n");
        size_t len = eol != NULL ? (size_t)(eol - line) : strlen(line);
        if (len > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            snprintf(out, outlen, "%.*s", (int)(len - (size_t)(v - line)), v);
            return out;
        }
        line = eol != NULL ? eol + 2 : NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- signing */

static void run_signer(char *out, size_t outlen, char *const argv[])
{
    cr_assert_eq(th_run(argv, NULL, out, outlen, 30000), 0, "signer failed: %s", out);
    out[strcspn(out, "\n")] = '\0';
}

/* POSTs a Twilio form to path_query, signed over PUBLIC + path_query. */
static void twilio_post(const fixture_t *f, const char *path_query, const char *form, http_result_t *r)
{
    char url[1024], sig[128], hdr[160];
    snprintf(url, sizeof url, PUBLIC "%s", path_query);
    char *argv[] = {"python3", SIGNER, "twilio", TOKEN, url, (char *)form, NULL};
    run_signer(sig, sizeof sig, argv);
    snprintf(hdr, sizeof hdr, "X-Twilio-Signature: %s", sig);
    http(f, "POST", path_query, form, "application/x-www-form-urlencoded", hdr, r);
}

static void meta_post(const fixture_t *f, const char *body, const char *secret, http_result_t *r)
{
    static char sig[128];
    char hdr[200];
    char *argv[] = {"python3", SIGNER, "meta", (char *)secret, (char *)body, NULL};
    run_signer(sig, sizeof sig, argv);
    snprintf(hdr, sizeof hdr, "X-Hub-Signature-256: %s", sig);
    http(f, "POST", "/meta/webhook", body, "application/json", hdr, r);
}

/* ---------------------------------------------------------------- records */

static json_object *parse(const char *s)
{
    json_object *o = json_tokener_parse(s);
    cr_assert_not_null(o, "not JSON: %s", s);
    return o;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

/* Reads all of topic and asserts it holds exactly want records. The
 * receiver answers a webhook only once what it produced is acknowledged
 * (docs/webhooks.md) and produces nothing on its own, so once the answers
 * are in, the log holds everything the requests will ever produce: reading
 * it to its end shows a surplus as well as a shortfall. */
static th_kafka_record_t *records(const fixture_t *f, const char *topic, size_t want, size_t *n)
{
    th_kafka_record_t *recs = th_kafka_read_to_end(f->brokers, topic, 20000, n);
    cr_assert_not_null(recs, "cannot read %s", topic);
    cr_assert_eq(*n, want, "%s: %zu records, want %zu", topic, *n, want);
    return recs;
}

static json_object *oracle(const char *path)
{
    json_object *o = json_object_from_file(path);
    cr_assert_not_null(o, "cannot read %s", path);
    return o;
}

static const char *twilio_example(json_object *root, const char *section, const char *name)
{
    json_object *ex = cmn_json_get_object(cmn_json_get_object(root, section), "constructed_examples");
    const char *v = ex != NULL ? cmn_json_get_string(ex, name) : NULL;
    cr_assert_not_null(v, "%s.%s", section, name);
    return v;
}

/* Registers phone as an address of client (what the router does) and
 * stores a snapshot for it. */
static void known_client(const fixture_t *f, const char *client, const char *phone, const char *snapshot)
{
    unsigned char hash[CMN_ADDRESS_HASH_LEN];
    char hex[2 * CMN_ADDRESS_HASH_LEN + 1], sql[1024], out[64];
    cr_assert_eq(cmn_crypto_address_hash(DATA_KEY, phone, hash), 0);
    cmn_crypto_hex(hash, hex);
    snprintf(sql, sizeof sql,
             "INSERT INTO client_contacts (tenant_id, channel, address_hash, client_id)"
             " VALUES ('default', 'sms', decode('%s', 'hex'), '%s') RETURNING 1",
             hex, client);
    cr_assert_eq(th_pg_query_value(f->db, sql, out, sizeof out), 0);
    if (snapshot != NULL) {
        snprintf(sql, sizeof sql,
                 "INSERT INTO client_preferences (tenant_id, client_id, snapshot, updated_at)"
                 " VALUES ('default', '%s', '%s'::jsonb, '2026-03-01T10:00:00Z') RETURNING 1",
                 client, snapshot);
        cr_assert_eq(th_pg_query_value(f->db, sql, out, sizeof out), 0);
    }
}

/* ------------------------------------------------------------------ tests */

Test(webhook_receiver, twilio_status_oracle_examples_become_status_events)
{
    fixture_t f;
    http_result_t r;
    size_t n = 0;
    start(&f, "wh_twilio_status");
    json_object *root = oracle(TWILIO_ORACLE);

    twilio_post(&f, "/twilio/status?communication_id=" CID "&hop=1&attempt=2",
                twilio_example(root, "status_callback", "delivered_sms"), &r);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    /* No id in the URL: keyed by the provider message id. */
    twilio_post(&f, "/twilio/status", twilio_example(root, "status_callback", "failed_whatsapp_63016"), &r);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);

    th_kafka_record_t *recs = records(&f, "crm.status", 2, &n);
    for (size_t i = 0; i < n; i++) {
        json_object *ev = parse(recs[i].value);
        if (strcmp(jstr(ev, "status"), "delivered") == 0) {
            cr_expect_str_eq(recs[i].key, CID);
            cr_expect_str_eq(jstr(ev, "communication_id"), CID);
            cr_expect_str_eq(jstr(ev, "channel"), "sms");
            cr_expect_str_eq(jstr(ev, "hop"), "1");
            cr_expect_str_eq(jstr(ev, "attempt"), "2");
            cr_expect_str_eq(jstr(ev, "provider"), "twilio");
            cr_expect_str_eq(jstr(ev, "provider_message_id"), "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        } else {
            cr_expect_str_eq(jstr(ev, "status"), "failed");
            cr_expect_str_eq(recs[i].key, "SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
            cr_expect_str_eq(jstr(ev, "communication_id"), "");
            cr_expect_str_eq(jstr(ev, "channel"), "whatsapp");
            cr_expect_str_eq(jstr(ev, "error_code"), "63016");
        }
        json_object_put(ev);
    }
    th_kafka_records_free(recs, n);
    json_object_put(root);
    stop(&f);
}

Test(webhook_receiver, a_retried_callback_has_the_same_event_id)
{
    fixture_t f;
    http_result_t r;
    size_t n = 0;
    start(&f, "wh_retry");
    const char *form = "MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&MessageStatus=undelivered&ErrorCode=30003"
                       "&From=%2B14155552345&To=%2B14155559876";
    twilio_post(&f, "/twilio/status?communication_id=" CID "&hop=0&attempt=1", form, &r);
    cr_assert_eq(r.status, 200);
    twilio_post(&f, "/twilio/status?communication_id=" CID "&hop=0&attempt=1", form, &r);
    cr_assert_eq(r.status, 200);
    /* queued produces nothing. */
    twilio_post(&f, "/twilio/status?communication_id=" CID "&hop=0&attempt=1",
                "MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&MessageStatus=queued", &r);
    cr_assert_eq(r.status, 200);
    th_kafka_record_t *recs = records(&f, "crm.status", 2, &n);
    json_object *a = parse(recs[0].value), *b = parse(recs[1].value);
    cr_expect_str_eq(jstr(a, "event_id"), jstr(b, "event_id"));
    cr_expect_str_eq(jstr(a, "status"), "failed");
    cr_expect_str_eq(jstr(a, "reason"), "undelivered");
    cr_expect_str_eq(jstr(a, "error_code"), "30003");
    json_object_put(a);
    json_object_put(b);
    th_kafka_records_free(recs, n);
    stop(&f);
}

Test(webhook_receiver, bad_or_missing_signatures_are_403_and_produce_nothing)
{
    fixture_t f;
    http_result_t r;
    size_t n = 0;
    char ct[128];
    start(&f, "wh_forbidden");
    const char *form = "MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&MessageStatus=delivered";

    http(&f, "POST", "/twilio/status", form, "application/x-www-form-urlencoded", NULL, &r);
    cr_expect_eq(r.status, 403);
    cr_expect_str_eq(header(&r, "Content-Type", ct, sizeof ct), "application/problem+json");
    http(&f, "POST", "/twilio/status", form, "application/x-www-form-urlencoded",
         "X-Twilio-Signature: RSOYDt4T1cUTdK1PDd93/VVr8B8=", &r);
    cr_expect_eq(r.status, 403);
    /* Signed for another URL (the query carries the ids, so it is signed too). */
    char sig[128], hdr[160];
    char *argv[] = {"python3", SIGNER, "twilio", TOKEN, PUBLIC "/twilio/status?hop=0", (char *)form, NULL};
    run_signer(sig, sizeof sig, argv);
    snprintf(hdr, sizeof hdr, "X-Twilio-Signature: %s", sig);
    http(&f, "POST", "/twilio/status?hop=1", form, "application/x-www-form-urlencoded", hdr, &r);
    cr_expect_eq(r.status, 403);
    /* Twilio inbound and Meta too. */
    http(&f, "POST", "/twilio/inbound", "MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&From=%2B14155550100&Body=STOP",
         "application/x-www-form-urlencoded", hdr, &r);
    cr_expect_eq(r.status, 403);
    const char *meta = "{\"object\":\"whatsapp_business_account\",\"entry\":[]}";
    meta_post(&f, meta, "not-the-app-secret", &r);
    cr_expect_eq(r.status, 403);
    http(&f, "POST", "/meta/webhook", meta, "application/json", NULL, &r);
    cr_expect_eq(r.status, 403);

    th_kafka_record_t *recs = records(&f, "crm.status", 0, &n);
    th_kafka_records_free(recs, n);
    recs = records(&f, "crm.inbound", 0, &n);
    th_kafka_records_free(recs, n);
    /* And a correctly signed one goes through. */
    twilio_post(&f, "/twilio/status?hop=1", form, &r);
    cr_expect_eq(r.status, 200, "%ld %s", r.status, r.body);
    recs = records(&f, "crm.status", 1, &n);
    th_kafka_records_free(recs, n);
    stop(&f);
}

Test(webhook_receiver, body_sha256_variant_is_accepted)
{
    fixture_t f;
    http_result_t r;
    size_t n = 0;
    char line[512], hdr[200];
    start(&f, "wh_bodysha");
    const char *body = "{\"MessageSid\":\"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"MessageStatus\":\"read\","
                       "\"To\":\"whatsapp:+14155559876\"}";
    char *argv[] = {"python3", SIGNER, "twilio-json", TOKEN, PUBLIC "/twilio/status?communication_id=" CID,
                    (char *)body, NULL};
    run_signer(line, sizeof line, argv);
    char *space = strchr(line, ' ');
    cr_assert_not_null(space);
    *space = '\0';
    snprintf(hdr, sizeof hdr, "X-Twilio-Signature: %s", space + 1);
    http(&f, "POST", line + strlen(PUBLIC), body, "application/json", hdr, &r);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    /* The same signature with a changed body fails the hash. */
    http(&f, "POST", line + strlen(PUBLIC), "{\"MessageSid\":\"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
         "application/json", hdr, &r);
    cr_expect_eq(r.status, 403);
    th_kafka_record_t *recs = records(&f, "crm.status", 1, &n);
    json_object *ev = parse(recs[0].value);
    cr_expect_str_eq(jstr(ev, "status"), "read");
    cr_expect_str_eq(jstr(ev, "channel"), "whatsapp");
    cr_expect_str_eq(jstr(ev, "communication_id"), CID);
    json_object_put(ev);
    th_kafka_records_free(recs, n);
    stop(&f);
}

Test(webhook_receiver, stop_from_a_known_number_opts_the_client_out)
{
    fixture_t f;
    http_result_t r;
    size_t n = 0;
    char ct[64];
    start(&f, "wh_stop");
    known_client(&f, "c-42", KNOWN_PHONE,
                 "{\"v\":1,\"tenant_id\":\"default\",\"client_id\":\"c-42\",\"preferred_channels\":[\"sms\"],"
                 "\"timezone\":\"Europe/Paris\",\"opt_out\":{\"email\":false,\"sms\":false,\"whatsapp\":false},"
                 "\"updated_at\":\"2026-03-01T10:00:00Z\"}");
    twilio_post(&f, "/twilio/inbound",
                "MessageSid=SMdddddddddddddddddddddddddddddddd&From=%2B14155550100&To=%2B14155552345&Body=Stop.", &r);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_expect_str_eq(header(&r, "Content-Type", ct, sizeof ct), "text/xml; charset=utf-8");
    cr_expect_not_null(strstr(r.body, "<Response/>"), "%s", r.body);

    th_kafka_record_t *recs = records(&f, "crm.preferences", 1, &n);
    cr_expect_str_eq(recs[0].key, "default:c-42");
    json_object *p = parse(recs[0].value);
    json_object *opt = json_object_object_get(p, "opt_out");
    cr_expect(json_object_get_boolean(json_object_object_get(opt, "sms")));
    cr_expect_not(json_object_get_boolean(json_object_object_get(opt, "whatsapp")));
    cr_expect_not(json_object_get_boolean(json_object_object_get(opt, "email")));
    cr_expect_str_eq(jstr(p, "timezone"), "Europe/Paris", "the rest of the snapshot is kept");
    json_object_put(p);
    th_kafka_records_free(recs, n);

    recs = records(&f, "crm.inbound", 1, &n);
    cr_expect_str_eq(recs[0].key, "default:" KNOWN_PHONE);
    json_object *m = parse(recs[0].value);
    cr_expect_str_eq(jstr(m, "keyword"), "stop");
    cr_expect_str_eq(jstr(m, "channel"), "sms");
    json_object_put(m);
    th_kafka_records_free(recs, n);

    /* START opts back in on that channel. */
    twilio_post(&f, "/twilio/inbound",
                "MessageSid=SMeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee&From=%2B14155550100&To=%2B14155552345&Body=START", &r);
    cr_assert_eq(r.status, 200);
    recs = records(&f, "crm.preferences", 2, &n);
    /* One key, one partition: the START snapshot comes second. */
    p = parse(recs[1].value);
    opt = json_object_object_get(p, "opt_out");
    cr_expect_not(json_object_get_boolean(json_object_object_get(opt, "sms")), "%s", recs[1].value);
    json_object_put(p);
    th_kafka_records_free(recs, n);
    stop(&f);
}

Test(webhook_receiver, help_is_answered_with_twiml_and_oracle_inbounds_are_stored)
{
    fixture_t f;
    http_result_t r;
    size_t n = 0;
    char out[128];
    start(&f, "wh_help");
    json_object *root = oracle(TWILIO_ORACLE);

    twilio_post(&f, "/twilio/inbound",
                "MessageSid=SMffffffffffffffffffffffffffffffff&From=%2B14155550100&To=%2B14155552345&Body=help", &r);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_expect_str_eq(r.body, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>" HELP
                             "</Message></Response>");
    /* The oracle's WhatsApp STOP from a number of no known client: stored,
     * no preference change, and the 24-hour window opens. */
    twilio_post(&f, "/twilio/inbound", twilio_example(root, "inbound_message_webhook", "whatsapp_text"), &r);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    twilio_post(&f, "/twilio/inbound", twilio_example(root, "inbound_message_webhook", "sms_with_media"), &r);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);

    th_kafka_record_t *recs = records(&f, "crm.inbound", 3, &n);
    int seen_media = 0, seen_wa = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *m = parse(recs[i].value);
        if (strcmp(jstr(m, "provider_message_id"), "MMdddddddddddddddddddddddddddddddd") == 0) {
            json_object *media = json_object_object_get(m, "media");
            cr_assert_eq(json_object_array_length(media), 1);
            cr_expect_str_eq(jstr(json_object_array_get_idx(media, 0), "content_type"), "image/jpeg");
            seen_media = 1;
        }
        if (strcmp(jstr(m, "channel"), "whatsapp") == 0) {
            cr_expect_str_eq(recs[i].key, "default:+14155559876");
            cr_expect_str_eq(jstr(m, "profile_name"), "Jane");
            cr_expect_str_eq(jstr(m, "keyword"), "stop");
            seen_wa = 1;
        }
        json_object_put(m);
    }
    cr_expect(seen_media && seen_wa);
    th_kafka_records_free(recs, n);
    recs = records(&f, "crm.preferences", 0, &n);
    th_kafka_records_free(recs, n);
    cr_assert_eq(th_pg_query_value(f.db,
                                   "SELECT count(*) FROM conversations WHERE channel = 'whatsapp'"
                                   " AND window_expires_at = last_inbound_at + interval '24 hours'"
                                   " AND last_inbound_at > now() - interval '5 minutes'",
                                   out, sizeof out),
                 0);
    cr_expect_str_eq(out, "1");
    json_object_put(root);
    stop(&f);
}

Test(webhook_receiver, meta_verification_with_right_and_wrong_token)
{
    fixture_t f;
    http_result_t r;
    start(&f, "wh_meta_verify");
    http(&f, "GET", "/meta/webhook?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=" VERIFY, NULL,
         NULL, NULL, &r);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "1158201444");
    http(&f, "GET", "/meta/webhook?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=wrong", NULL, NULL,
         NULL, &r);
    cr_expect_eq(r.status, 403);
    cr_expect_null(strstr(r.body, "1158201444"));
    http(&f, "GET", "/meta/webhook?hub.mode=subscribe&hub.verify_token=" VERIFY, NULL, NULL, NULL, &r);
    cr_expect_eq(r.status, 400);
    cr_expect_not_null(strstr(r.body, "hub.challenge"), "%s", r.body);
    stop(&f);
}

Test(webhook_receiver, every_meta_oracle_payload_goes_through)
{
    fixture_t f;
    http_result_t r;
    size_t n = 0;
    char out[64];
    start(&f, "wh_meta_events");
    /* The oracle's sender, known as client c-9. */
    known_client(&f, "c-9", "+16505551234", NULL);
    json_object *root = oracle(META_ORACLE);
    json_object *inbound =
        cmn_json_get_object(cmn_json_get_object(root, "verbatim_from_spec"), "inbound_webhook_examples");
    json_object *constructed = cmn_json_get_object(root, "constructed");
    size_t posted = 0;
    json_object_object_foreach(inbound, name, payload)
    {
        meta_post(&f, json_object_to_json_string_ext(payload, JSON_C_TO_STRING_PLAIN), APP_SECRET, &r);
        cr_expect_eq(r.status, 200, "%s: %ld %s", name, r.status, r.body);
        posted++;
    }
    cr_assert_eq(posted, 6);
    const char *statuses[] = {"status_sent", "status_delivered", "status_read", "status_failed_131047",
                              "status_failed_131026"};
    for (size_t i = 0; i < 5; i++) {
        json_object *status_payload = cmn_json_get_object(constructed, statuses[i]);
        cr_assert_not_null(status_payload, "%s", statuses[i]);
        meta_post(&f, json_object_to_json_string_ext(status_payload, JSON_C_TO_STRING_PLAIN), APP_SECRET, &r);
        cr_expect_eq(r.status, 200, "%s: %ld %s", statuses[i], r.status, r.body);
    }

    /* Five person messages (the system notice is not one). */
    th_kafka_record_t *recs = records(&f, "crm.inbound", 5, &n);
    for (size_t i = 0; i < n; i++) {
        json_object *m = parse(recs[i].value);
        cr_expect_str_eq(recs[i].key, "default:+16505551234");
        cr_expect_str_eq(jstr(m, "provider"), "meta");
        json_object_put(m);
    }
    th_kafka_records_free(recs, n);
    /* Five receipts; none carries biz_opaque_callback_data and nothing is
     * projected, so they are keyed by the wamid. */
    recs = records(&f, "crm.status", 5, &n);
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *ev = parse(recs[i].value);
        cr_expect_str_eq(recs[i].key, "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA");
        if (strcmp(jstr(ev, "status"), "failed") == 0) {
            failed++;
            cr_expect_not_null(jstr(ev, "error_code"));
        }
        json_object_put(ev);
    }
    cr_expect_eq(failed, 2);
    th_kafka_records_free(recs, n);
    /* The template button "Unsubscribe" opted the known sender out of WhatsApp. */
    recs = records(&f, "crm.preferences", 1, &n);
    cr_expect_str_eq(recs[0].key, "default:c-9");
    json_object *p = parse(recs[0].value);
    cr_expect(json_object_get_boolean(json_object_object_get(json_object_object_get(p, "opt_out"), "whatsapp")));
    json_object_put(p);
    th_kafka_records_free(recs, n);
    /* The window is open from the latest message's own timestamp. */
    cr_assert_eq(th_pg_query_value(f.db,
                                   "SELECT extract(epoch FROM last_inbound_at)::bigint FROM conversations"
                                   " WHERE channel = 'whatsapp'",
                                   out, sizeof out),
                 0);
    cr_expect_str_eq(out, "1750091045");
    json_object_put(root);
    stop(&f);
}

/* ------------------------------------------------------- email tracking */

static void token(cmn_track_kind_t kind, const char *target, cmn_buf_t *out)
{
    cmn_track_token_t t;
    cmn_track_token_init(&t);
    t.kind = kind;
    snprintf(t.tenant_id, sizeof t.tenant_id, "default");
    snprintf(t.client_id, sizeof t.client_id, "c-42");
    snprintf(t.communication_id, sizeof t.communication_id, CID);
    t.hop = 0;
    if (target != NULL) {
        t.link_index = 0;
        snprintf(t.target, sizeof t.target, "%s", target);
    }
    cmn_buf_reset(out);
    cr_assert_eq(cmn_track_token_make(TRACK_KEY, &t, out), 0);
}

Test(webhook_receiver, email_open_click_and_one_click_unsubscribe)
{
    fixture_t f;
    http_result_t r;
    size_t n = 0;
    char path[4096], v[512];
    cmn_buf_t tok = CMN_BUF_INIT;
    start(&f, "wh_tracking");

    token(CMN_TRACK_OPEN, NULL, &tok);
    snprintf(path, sizeof path, "/t/o/%s", tok.data);
    http(&f, "GET", path, NULL, NULL, NULL, &r);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(header(&r, "Content-Type", v, sizeof v), "image/gif");
    cr_expect_not_null(strstr(header(&r, "Cache-Control", v, sizeof v), "no-store"));
    cr_expect_eq(r.body_len, CMN_TRACK_PIXEL_GIF_LEN);

    token(CMN_TRACK_CLICK, "https://example.com/offer?a=1&b=2", &tok);
    snprintf(path, sizeof path, "/t/c/%s", tok.data);
    http(&f, "GET", path, NULL, NULL, NULL, &r);
    cr_expect_eq(r.status, 302);
    cr_expect_str_eq(header(&r, "Location", v, sizeof v), "https://example.com/offer?a=1&b=2");
    /* One character changed: refused, no redirect. */
    size_t last = strlen(path) - 1;
    path[last] = path[last] == 'A' ? 'B' : 'A';
    http(&f, "GET", path, NULL, NULL, NULL, &r);
    cr_expect(r.status == 403 || r.status == 400, "%ld", r.status);
    cr_expect_str_eq(header(&r, "Location", v, sizeof v), "");
    /* An open token is not a click token. */
    token(CMN_TRACK_OPEN, NULL, &tok);
    snprintf(path, sizeof path, "/t/c/%s", tok.data);
    http(&f, "GET", path, NULL, NULL, NULL, &r);
    cr_expect_eq(r.status, 400);

    th_kafka_record_t *recs = records(&f, "crm.status", 2, &n);
    int opened = 0, clicked = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *ev = parse(recs[i].value);
        cr_expect_str_eq(recs[i].key, CID);
        cr_expect_str_eq(jstr(ev, "channel"), "email");
        opened += strcmp(jstr(ev, "status"), "opened") == 0;
        if (strcmp(jstr(ev, "status"), "clicked") == 0) {
            clicked++;
            json_object *d = json_object_object_get(ev, "details");
            cr_expect_str_eq(jstr(d, "url"), "https://example.com/offer?a=1&b=2");
        }
        json_object_put(ev);
    }
    cr_expect(opened == 1 && clicked == 1);
    th_kafka_records_free(recs, n);

    token(CMN_TRACK_UNSUBSCRIBE, NULL, &tok);
    snprintf(path, sizeof path, "/u/%s", tok.data);
    /* The visible page changes nothing by itself. */
    http(&f, "GET", path, NULL, NULL, NULL, &r);
    cr_expect_eq(r.status, 200);
    cr_expect_not_null(strstr(r.body, "<form method=\"post\""), "%s", r.body);
    recs = records(&f, "crm.preferences", 0, &n);
    th_kafka_records_free(recs, n);
    http(&f, "POST", path, "foo=bar", "application/x-www-form-urlencoded", NULL, &r);
    cr_expect_eq(r.status, 400);
    cr_expect_not_null(strstr(r.body, "List-Unsubscribe"), "%s", r.body);
    http(&f, "POST", path, "List-Unsubscribe=One-Click", "application/x-www-form-urlencoded", NULL, &r);
    cr_expect_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_expect_str_eq(header(&r, "Location", v, sizeof v), "");
    recs = records(&f, "crm.preferences", 1, &n);
    cr_expect_str_eq(recs[0].key, "default:c-42");
    json_object *p = parse(recs[0].value);
    cr_expect(json_object_get_boolean(json_object_object_get(json_object_object_get(p, "opt_out"), "email")));
    json_object_put(p);
    th_kafka_records_free(recs, n);
    cmn_buf_free(&tok);
    stop(&f);
}

Test(webhook_receiver, malformed_input_is_a_problem_naming_the_field)
{
    fixture_t f;
    http_result_t r;
    start(&f, "wh_malformed");
    twilio_post(&f, "/twilio/status?communication_id=not-a-uuid",
                "MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&MessageStatus=sent", &r);
    cr_expect_eq(r.status, 400);
    cr_expect_not_null(strstr(r.body, "\"field\":\"communication_id\""), "%s", r.body);
    twilio_post(&f, "/twilio/inbound", "MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&Body=hi", &r);
    cr_expect_eq(r.status, 400);
    cr_expect_not_null(strstr(r.body, "\"field\":\"From\""), "%s", r.body);
    meta_post(&f, "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":[{\"field\":\"messages\","
                  "\"value\":{\"statuses\":[{\"id\":\"w\",\"status\":\"sent\"}]}}]}]}",
              APP_SECRET, &r);
    cr_expect_eq(r.status, 400);
    cr_expect_not_null(strstr(r.body, "entry[0].changes[0].value.statuses[0].timestamp"), "%s", r.body);
    http(&f, "GET", "/twilio/status", NULL, NULL, NULL, &r);
    cr_expect_eq(r.status, 405);
    http(&f, "GET", "/nope", NULL, NULL, NULL, &r);
    cr_expect_eq(r.status, 404);
    http(&f, "GET", "/metrics", NULL, NULL, NULL, &r);
    cr_expect_not_null(strstr(r.body, "webhook_requests_total{endpoint=\"twilio_status\",result=\"invalid\"} 1"),
                       "%s", r.body);
    stop(&f);
}
