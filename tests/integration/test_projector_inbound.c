/* test_projector_inbound.c - the real crm-projector against the Kafka mock
 * cluster and a private PostgreSQL, for the projections of issue 5:
 *   - crm.inbound: messages stored once with the sender hashed and
 *     everything personal sealed, the client resolved through
 *     client_contacts, conversations moved only by new messages (WhatsApp
 *     window = latest + 24 h), unknown senders listed in contacts, bad
 *     records on crm.dlq;
 *   - receipts named only by provider_message_id, before and after the
 *     `sent` event they belong to;
 *   - opened and clicked milestones and the analysts' views. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/buf.h"
#include "crm/crypto.h"
#include "crm/inbound.h"
#include "crm/status.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "th_kafka.h"
#include "th_pg.h"
#include "th_proc.h"

#define DATA_KEY "projector-inbound-test-key-0123456789abcdef"
#define T0 1764000000000LL /* 2025-11-24T16:00:00Z */
#define KNOWN "+33612345678"
#define STRANGER "+447700900123"

typedef struct fixture {
    th_kafka_t *kafka;
    const char *brokers;
    char url[256];
    th_proc_t proc;
    int port;
    long status_records, inbound_records;
} fixture_t;

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void start(fixture_t *fx, const char *db)
{
    char bin[512], brokers[600], dburl[300], port[32];
    memset(fx, 0, sizeof *fx);
    fx->kafka = th_kafka_start(1);
    cr_assert_not_null(fx->kafka, "mock cluster did not start");
    fx->brokers = th_kafka_bootstraps(fx->kafka);
    cr_assert_eq(th_pg_database(db, fx->url, sizeof fx->url), 0, "database %s", db);
    cr_assert_not_null(th_bin("crm-projector", bin, sizeof bin), "crm-projector is not built");
    fx->port = th_free_port();
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", fx->brokers);
    snprintf(dburl, sizeof dburl, "DATABASE_URL=%s", fx->url);
    snprintf(port, sizeof port, "HTTP_PORT=%d", fx->port);
    char *const argv[] = {bin, NULL};
    char *const env[] = {brokers, dburl, port, "HTTP_BIND=127.0.0.1", "LOG_LEVEL=debug",
                         "CRM_DATA_KEY=" DATA_KEY, "PROJECTOR_GROUP_ID=inbound-test", NULL};
    cr_assert_eq(th_proc_start(&fx->proc, "crm-projector", argv, env), 0);
    cr_assert_eq(th_proc_wait_ready(&fx->proc, fx->port, 30000), 0, "projector not ready; see %s",
                 fx->proc.log_path);
}

static void stop(fixture_t *fx)
{
    cr_expect_eq(th_proc_stop(&fx->proc, SIGTERM, 20000), 0, "projector exit; see %s", fx->proc.log_path);
    th_kafka_stop(fx->kafka);
}

static long long qint(const fixture_t *fx, const char *sql)
{
    char out[64];
    cr_assert_eq(th_pg_query_value(fx->url, sql, out, sizeof out), 0, "query failed: %s", sql);
    return out[0] == '\0' ? -1 : strtoll(out, NULL, 10);
}

static void qstr(const fixture_t *fx, const char *sql, char *out, size_t outlen)
{
    cr_assert_eq(th_pg_query_value(fx->url, sql, out, outlen), 0, "query failed: %s", sql);
}

static void wait_for(const fixture_t *fx, const char *sql, long long want)
{
    long long got = -1;
    for (int waited = 0; waited <= 60000; waited += 100) {
        got = qint(fx, sql);
        if (got == want)
            return;
        sleep_ms(100);
    }
    cr_assert_fail("%s: want %lld, got %lld (projector log: %s)", sql, want, got, fx->proc.log_path);
}

/* Waits until every record produced to topic so far is committed. */
static void wait_topic(const fixture_t *fx, const char *topic, long records)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic = '%s'",
             topic);
    wait_for(fx, sql, records);
}

static void hash_hex(const char *phone, char hex[2 * CMN_ADDRESS_HASH_LEN + 1])
{
    unsigned char h[CMN_ADDRESS_HASH_LEN];
    cr_assert_eq(cmn_crypto_address_hash(DATA_KEY, phone, h), 0);
    cmn_crypto_hex(h, hex);
}

/* One InboundMessage as the webhook receiver writes it. */
static void produce_inbound(fixture_t *fx, const char *pmid, const char *channel, const char *from, const char *body,
                            int64_t at_ms)
{
    char event_id[CMN_UUID_STR_LEN + 1], when[40], value[1024], key[64], name[96], keyword[32] = "";
    snprintf(name, sizeof name, "twilio|%s", pmid);
    /* The receiver recognises commands; the projector stores its verdict. */
    const char *kw = cmn_inbound_keyword_name(cmn_inbound_keyword_parse(body));
    if (kw != NULL)
        snprintf(keyword, sizeof keyword, ",\"keyword\":\"%s\"", kw);
    cr_assert_eq(cmn_uuid_v5(CMN_UUID_NS_EVENT, name, strlen(name), event_id), 0);
    cr_assert_eq(cmn_time_format_rfc3339(at_ms, when, sizeof when), 0);
    snprintf(value, sizeof value,
             "{\"v\":1,\"event_id\":\"%s\",\"tenant_id\":\"acme\",\"channel\":\"%s\",\"provider\":\"twilio\","
             "\"provider_message_id\":\"%s\",\"from\":\"%s\",\"to\":\"+15005550006\",\"body\":\"%s\","
             "\"profile_name\":\"Ana Secret\",\"received_at\":\"%s\"%s}",
             event_id, channel, pmid, from, body, when, keyword);
    snprintf(key, sizeof key, "acme:%s", from);
    cr_assert_eq(th_kafka_produce(fx->brokers, "crm.inbound", key, value, NULL), 0);
    fx->inbound_records++;
}

Test(projector_inbound, messages_conversations_and_unknown_senders, .timeout = 240)
{
    fixture_t fx;
    char sql[1024], val[512], known[65], stranger[65];
    start(&fx, "projector_inbound");
    hash_hex(KNOWN, known);
    hash_hex(STRANGER, stranger);

    /* The router has seen client-7 at KNOWN (client_contacts). */
    snprintf(sql, sizeof sql,
             "INSERT INTO client_contacts (tenant_id, channel, address_hash, client_id)"
             " VALUES ('acme', 'whatsapp', decode('%s', 'hex'), 'client-7')",
             known);
    cr_assert_eq(th_pg_query_value(fx.url, sql, NULL, 0), 0);

    produce_inbound(&fx, "SM-1", "whatsapp", KNOWN, "Hello there", T0);
    produce_inbound(&fx, "SM-2", "whatsapp", KNOWN, "STOP", T0 + 60000);
    produce_inbound(&fx, "SM-1", "whatsapp", KNOWN, "Hello there", T0); /* the provider retried its webhook */
    produce_inbound(&fx, "SM-3", "sms", STRANGER, "who is this?", T0 + 5000);
    wait_topic(&fx, "crm.inbound", fx.inbound_records);

    cr_expect_eq(qint(&fx, "SELECT count(*) FROM inbound_messages"), 3, "the retried webhook is stored once");
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM inbound_messages WHERE client_id = 'client-7'"), 2);
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM inbound_messages WHERE client_id IS NULL"), 1);
    /* Nothing personal in clear: no number, body or name anywhere in the row. */
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM inbound_messages m WHERE m::text LIKE '%33612345678%'"
                           " OR m::text LIKE '%Hello%' OR m::text LIKE '%Ana Secret%'"
                           " OR m::text LIKE '%447700900123%'"),
                 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM inbound_messages WHERE from_hash = decode('%s', 'hex')", known);
    cr_expect_eq(qint(&fx, sql), 2);
    /* The sealed body opens with the key. */
    qstr(&fx, "SELECT body_sealed FROM inbound_messages WHERE provider_message_id = 'SM-2'", val, sizeof val);
    cmn_buf_t body = CMN_BUF_INIT;
    cr_assert_eq(cmn_crypto_open(DATA_KEY, val, &body), 0, "%s", val);
    cr_expect_str_eq(body.data, "STOP");
    cmn_buf_free(&body);
    qstr(&fx, "SELECT keyword FROM inbound_messages WHERE provider_message_id = 'SM-2'", val, sizeof val);
    cr_expect_str_eq(val, "stop");

    /* WhatsApp conversation: two new messages, window from the latest. */
    snprintf(sql, sizeof sql,
             "SELECT unread_count || ',' || (extract(epoch FROM last_inbound_at) * 1000)::bigint || ','"
             " || (extract(epoch FROM window_expires_at - last_inbound_at))::bigint FROM conversations"
             " WHERE tenant_id = 'acme' AND channel = 'whatsapp' AND phone_hash = decode('%s', 'hex')",
             known);
    qstr(&fx, sql, val, sizeof val);
    char want[128];
    snprintf(want, sizeof want, "2,%lld,86400", T0 + 60000);
    cr_expect_str_eq(val, want);
    /* SMS conversation: no window. */
    snprintf(sql, sizeof sql,
             "SELECT unread_count || ',' || (window_expires_at IS NULL) FROM conversations"
             " WHERE channel = 'sms' AND phone_hash = decode('%s', 'hex')",
             stranger);
    qstr(&fx, sql, val, sizeof val);
    cr_expect_str_eq(val, "1,true");

    /* Only the stranger is an unknown contact, and its number opens back. */
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM contacts"), 1);
    snprintf(sql, sizeof sql,
             "SELECT address_sealed FROM contacts WHERE status = 'unknown' AND inbound_count = 1"
             " AND channel = 'sms' AND address_hash = decode('%s', 'hex')",
             stranger);
    qstr(&fx, sql, val, sizeof val);
    cmn_buf_t addr = CMN_BUF_INIT;
    cr_assert_eq(cmn_crypto_open(DATA_KEY, val, &addr), 0, "%s", val);
    cr_expect_str_eq(addr.data, STRANGER);
    cmn_buf_free(&addr);

    /* An older message arriving late, in another batch: counted, but the
     * window does not move back. The CRM's verdict on a contact is kept. */
    cr_assert_eq(th_pg_query_value(fx.url, "UPDATE contacts SET status = 'ignored'", NULL, 0), 0);
    produce_inbound(&fx, "SM-4", "whatsapp", KNOWN, "earlier", T0 - 3600000);
    produce_inbound(&fx, "SM-5", "sms", STRANGER, "again", T0 + 9000);
    wait_topic(&fx, "crm.inbound", fx.inbound_records);
    snprintf(sql, sizeof sql,
             "SELECT unread_count || ',' || (extract(epoch FROM last_inbound_at) * 1000)::bigint FROM conversations"
             " WHERE channel = 'whatsapp' AND phone_hash = decode('%s', 'hex')",
             known);
    qstr(&fx, sql, val, sizeof val);
    snprintf(want, sizeof want, "3,%lld", T0 + 60000);
    cr_expect_str_eq(val, want);
    qstr(&fx, "SELECT status || ',' || inbound_count FROM contacts", val, sizeof val);
    cr_expect_str_eq(val, "ignored,2");
    cr_expect_eq(qint(&fx, "SELECT sum(messages) FROM v_inbound_daily"), 5);
    cr_expect_eq(qint(&fx, "SELECT sum(stops) FROM v_inbound_daily"), 1);

    /* Bad records go to the DLQ with the reason. */
    cr_assert_eq(th_kafka_produce(fx.brokers, "crm.inbound", "acme:x", "{\"v\":1,\"channel\":\"sms\"}", NULL), 0);
    fx.inbound_records++;
    wait_topic(&fx, "crm.inbound", fx.inbound_records);
    size_t n = 0;
    th_kafka_record_t *dlq = th_kafka_read_all(fx.brokers, "crm.dlq", 1, 20000, &n);
    cr_assert_eq(n, 1);
    cr_expect_not_null(strstr(dlq[0].headers_json, "\"x-crm-dlq-source-topic\":\"crm.inbound\""), "%s",
                       dlq[0].headers_json);
    cr_expect_not_null(strstr(dlq[0].headers_json, "event_id"), "%s", dlq[0].headers_json);
    th_kafka_records_free(dlq, n);
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM inbound_messages"), 5);
    stop(&fx);
}

/* ------------------------------------------------------------- receipts */

static void comm_id(int n, char out[CMN_UUID_STR_LEN + 1])
{
    char req[32];
    snprintf(req, sizeof req, "req-%d", n);
    cr_assert_eq(cmn_uuid_communication_id("acme", req, out), 0);
}

static void produce_event(fixture_t *fx, int comm, cmn_status_t status, cmn_channel_t ch, int hop, const char *pmid,
                          int64_t at)
{
    char req[32];
    cmn_status_event_t ev;
    memset(&ev, 0, sizeof ev);
    snprintf(req, sizeof req, "req-%d", comm);
    comm_id(comm, ev.communication_id);
    ev.request_id = req;
    ev.tenant_id = "acme";
    ev.client_id = "client-7";
    ev.message_type = "event_reminder";
    ev.channel = ch;
    ev.status = status;
    ev.hop = hop;
    ev.attempt = 1;
    ev.provider = ch == CMN_CHANNEL_EMAIL ? "smtp" : "twilio";
    ev.provider_message_id = pmid;
    ev.occurred_at_ms = at;
    cr_assert_eq(cmn_status_event_finalize(&ev), 0);
    cmn_buf_t json = CMN_BUF_INIT;
    cr_assert_eq(cmn_status_event_to_json(&ev, &json), 0);
    cr_assert_eq(th_kafka_produce(fx->brokers, "crm.status", ev.communication_id, json.data, NULL), 0);
    cmn_buf_free(&json);
    fx->status_records++;
}

/* A receipt as the webhook receiver produces it when it cannot tell the
 * communication: keyed and identified by the provider's message id. */
static void produce_receipt(fixture_t *fx, const char *pmid, const char *status, int64_t at)
{
    char event_id[CMN_UUID_STR_LEN + 1], when[40], value[1024], name[128];
    snprintf(name, sizeof name, "receipt|twilio|%s|%s|", pmid, status);
    cr_assert_eq(cmn_uuid_v5(CMN_UUID_NS_EVENT, name, strlen(name), event_id), 0);
    cr_assert_eq(cmn_time_format_rfc3339(at, when, sizeof when), 0);
    snprintf(value, sizeof value,
             "{\"v\":1,\"event_id\":\"%s\",\"communication_id\":\"\",\"tenant_id\":\"default\",\"channel\":\"sms\","
             "\"status\":\"%s\",\"provider\":\"twilio\",\"provider_message_id\":\"%s\",\"occurred_at\":\"%s\"}",
             event_id, status, pmid, when);
    cr_assert_eq(th_kafka_produce(fx->brokers, "crm.status", pmid, value, NULL), 0);
    fx->status_records++;
}

static void comm_row(const fixture_t *fx, int comm, const char *cols, char *out, size_t outlen)
{
    char c[CMN_UUID_STR_LEN + 1], sql[512];
    comm_id(comm, c);
    snprintf(sql, sizeof sql, "SELECT %s FROM communications WHERE communication_id = '%s'", cols, c);
    qstr(fx, sql, out, outlen);
}

Test(projector_inbound, receipts_wait_for_their_sent_event, .timeout = 240)
{
    fixture_t fx;
    char val[256];
    start(&fx, "projector_receipts");

    /* 1: the delivery receipt beats the worker's `sent`. */
    produce_event(&fx, 1, CMN_STATUS_ACCEPTED, CMN_CHANNEL_NONE, 0, NULL, T0);
    produce_receipt(&fx, "SM-early", "delivered", T0 + 5000);
    wait_topic(&fx, "crm.status", fx.status_records);
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM receipts_unmatched WHERE provider_message_id = 'SM-early'"), 1);
    comm_row(&fx, 1, "status", val, sizeof val);
    cr_expect_str_eq(val, "accepted");

    produce_event(&fx, 1, CMN_STATUS_SENT, CMN_CHANNEL_SMS, 0, "SM-early", T0 + 3000);
    wait_topic(&fx, "crm.status", fx.status_records);
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM receipts_unmatched"), 0, "the parked receipt was applied");
    comm_row(&fx, 1, "status || ',' || (extract(epoch FROM delivered_at) * 1000)::bigint || ',' || provider_message_id",
             val, sizeof val);
    char want[128];
    snprintf(want, sizeof want, "delivered,%lld,SM-early", T0 + 5000);
    cr_expect_str_eq(val, want);

    /* 2: `sent` first, then a receipt and its retried copy: applied at once, stored once. */
    produce_event(&fx, 2, CMN_STATUS_SENT, CMN_CHANNEL_SMS, 0, "SM-late", T0 + 10000);
    wait_topic(&fx, "crm.status", fx.status_records);
    produce_receipt(&fx, "SM-late", "read", T0 + 20000);
    produce_receipt(&fx, "SM-late", "read", T0 + 20000);
    wait_topic(&fx, "crm.status", fx.status_records);
    comm_row(&fx, 2, "status || ',' || (read_at IS NOT NULL)", val, sizeof val);
    cr_expect_str_eq(val, "read,true");
    char c2[CMN_UUID_STR_LEN + 1], sql[256];
    comm_id(2, c2);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM communication_events WHERE communication_id = '%s' AND status = 'read'"
             " AND tenant_id = 'acme' AND hop = 0",
             c2);
    cr_expect_eq(qint(&fx, sql), 1);

    /* 3: a receipt whose message we never sent stays parked. */
    produce_receipt(&fx, "SM-unknown", "delivered", T0 + 30000);
    wait_topic(&fx, "crm.status", fx.status_records);
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM receipts_unmatched"), 1);

    /* 4: email opened and clicked: milestones and the views count them. */
    produce_event(&fx, 4, CMN_STATUS_SENT, CMN_CHANNEL_EMAIL, 0, "<m4@crm>", T0 + 40000);
    produce_event(&fx, 4, CMN_STATUS_CLICKED, CMN_CHANNEL_EMAIL, 0, NULL, T0 + 50000);
    produce_event(&fx, 4, CMN_STATUS_OPENED, CMN_CHANNEL_EMAIL, 0, NULL, T0 + 45000);
    produce_event(&fx, 5, CMN_STATUS_SENT, CMN_CHANNEL_EMAIL, 0, "<m5@crm>", T0 + 40000);
    produce_event(&fx, 5, CMN_STATUS_OPENED, CMN_CHANNEL_EMAIL, 0, NULL, T0 + 46000);
    wait_topic(&fx, "crm.status", fx.status_records);
    comm_row(&fx, 4,
             "status || ',' || (extract(epoch FROM opened_at) * 1000)::bigint || ','"
             " || (extract(epoch FROM clicked_at) * 1000)::bigint",
             val, sizeof val);
    snprintf(want, sizeof want, "clicked,%lld,%lld", T0 + 45000, T0 + 50000);
    cr_expect_str_eq(val, want);
    comm_row(&fx, 5, "status || ',' || (opened_at IS NOT NULL)", val, sizeof val);
    cr_expect_str_eq(val, "opened,true");
    qstr(&fx,
         "SELECT sent || ',' || opened || ',' || clicked || ',' || open_rate || ',' || click_rate"
         " FROM v_delivery_rates WHERE channel = 'email'",
         val, sizeof val);
    cr_expect_str_eq(val, "2,2,1,1.0000,0.5000");
    cr_expect_eq(qint(&fx, "SELECT sum(opened) + 10 * sum(clicked) FROM communications_daily WHERE channel = 'email'"),
                 11);
    stop(&fx);
}
