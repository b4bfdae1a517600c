/* crmctl_conversations.c - `crmctl conversations set`: records when a person
 * last wrote to us, which opens (or closes) WhatsApp's 24-hour
 * customer-service window for crm-whatsapp-worker.
 *
 * The webhook receiver will maintain the conversations table from inbound
 * messages; until then, and afterwards for support and tests, an operator
 * sets a row by hand:
 *
 *   crmctl conversations set --tenant acme --phone +14155550100 --last-inbound now
 *   crmctl conversations set --tenant acme --phone +14155550100 --last-inbound 2026-11-20T09:00:00Z
 *
 * The number never reaches the database or the output: the row is keyed by
 * HMAC-SHA256(CRM_DATA_KEY, E.164), exactly as the worker computes it (see
 * migrations/0004_conversations.sql for why, and docs/whatsapp.md). */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/pg.h"
#include "crm/request.h"
#include "crm/time.h"
#include "crmctl.h"

#define CONV_PREFIX "crmctl conversations: "
/* PostgreSQL may still be starting (a fresh dev fleet): retry this long. */
#define CONV_CONNECT_TIMEOUT_MS 30000
/* Must equal WA_DATA_KEY_MIN in services/whatsapp-worker/wa_conversations.h:
 * a shorter key would make the hashes guessable. */
#define CONV_DATA_KEY_MIN 32
#define CONV_HASH_LEN 32

/* Upsert of one row. The window is computed by PostgreSQL from the same
 * value so the two columns cannot disagree; SMS has no window. */
static const char SQL_SET[] =
    "INSERT INTO conversations (tenant_id, channel, phone_hash, last_inbound_at, window_expires_at, updated_at)"
    " VALUES ($1, $2, decode($3, 'hex'), $4::timestamptz,"
    "         CASE WHEN $2 = 'whatsapp' THEN $4::timestamptz + interval '24 hours' END, now())"
    " ON CONFLICT (tenant_id, channel, phone_hash) DO UPDATE"
    " SET last_inbound_at = EXCLUDED.last_inbound_at, window_expires_at = EXCLUDED.window_expires_at,"
    "     updated_at = now()"
    " RETURNING to_char(window_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

static void usage(FILE *out)
{
    fprintf(out,
            "usage: crmctl conversations set --tenant T --phone +E164 --last-inbound RFC3339|now\n"
            "                                [--channel whatsapp|sms]\n"
            "\n"
            "Records the time of the person's latest inbound message in the conversations\n"
            "table of DATABASE_URL. On WhatsApp this opens the 24-hour window in which free\n"
            "text may be sent (a time more than 24 h ago closes it). The phone number is\n"
            "stored only as HMAC-SHA256(CRM_DATA_KEY, number); CRM_DATA_KEY (at least %d\n"
            "characters) must be the workers' key or they will not find the row.\n"
            "\n"
            "Exit status: 0 set, 1 database or key problem, 2 usage error.\n",
            CONV_DATA_KEY_MIN);
}

/* HMAC-SHA256(key, e164) as 64 lowercase hex characters in hex[65]. */
static int phone_hash_hex(const char *key, const char *e164, char hex[2 * CONV_HASH_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)e164, strlen(e164), mac, &maclen) == NULL ||
        maclen != CONV_HASH_LEN)
        return CMN_ERR_INVALID;
    static const char digits[] = "0123456789abcdef";
    for (unsigned int i = 0; i < maclen; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 0x0f];
    }
    hex[2 * maclen] = '\0';
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

static int conversations_set(int argc, char **argv)
{
    const char *tenant = NULL, *phone = NULL, *when = NULL, *channel = "whatsapp";
    char hash[2 * CONV_HASH_LEN + 1] = "";
    char ts[40] = "";
    char err[1024] = "";
    PGconn *conn = NULL;
    PGresult *res = NULL;
    int exit_code = 2; /* usage errors until the arguments are checked */

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, CONV_PREFIX "%s needs a value\n", a);
            goto cleanup;
        }
        if (strcmp(a, "--tenant") == 0)
            tenant = v;
        else if (strcmp(a, "--phone") == 0)
            phone = v;
        else if (strcmp(a, "--last-inbound") == 0)
            when = v;
        else if (strcmp(a, "--channel") == 0)
            channel = v;
        else {
            fprintf(stderr, CONV_PREFIX "unexpected argument '%s'\n", a);
            goto cleanup;
        }
        i++;
    }
    if (tenant == NULL || phone == NULL || when == NULL) {
        fprintf(stderr, CONV_PREFIX "--tenant, --phone and --last-inbound are required\n");
        goto cleanup;
    }
    if (!cmn_valid_id(tenant, CMN_REQ_MAX_ID)) {
        fprintf(stderr, CONV_PREFIX "--tenant: must be 1-%d printable characters without spaces\n", CMN_REQ_MAX_ID);
        goto cleanup;
    }
    /* The number is not echoed: it is personal data, and terminals and CI
     * logs keep what they print. */
    if (!cmn_valid_e164(phone)) {
        fprintf(stderr, CONV_PREFIX "--phone: must be an E.164 number like +14155550100\n");
        goto cleanup;
    }
    if (strcmp(channel, "whatsapp") != 0 && strcmp(channel, "sms") != 0) {
        fprintf(stderr, CONV_PREFIX "--channel: must be whatsapp or sms\n");
        goto cleanup;
    }
    int64_t at_ms = 0;
    if (strcmp(when, "now") == 0) {
        at_ms = cmn_now_ms();
    } else if (cmn_time_parse_rfc3339(when, &at_ms) != 0) {
        fprintf(stderr, CONV_PREFIX "--last-inbound: must be an RFC 3339 time like 2026-11-20T09:00:00Z, or now\n");
        goto cleanup;
    }
    cmn_time_format_rfc3339(at_ms, ts, sizeof ts);

    exit_code = 1;
    const char *key = getenv("CRM_DATA_KEY");
    if (key == NULL || strlen(key) < CONV_DATA_KEY_MIN) {
        fprintf(stderr, CONV_PREFIX "CRM_DATA_KEY: must be set to the workers' key (at least %d characters)\n",
                CONV_DATA_KEY_MIN);
        goto cleanup;
    }
    if (phone_hash_hex(key, phone, hash) != 0) {
        fprintf(stderr, CONV_PREFIX "cannot compute the phone hash\n");
        goto cleanup;
    }
    const char *url = getenv("DATABASE_URL");
    if (url == NULL || url[0] == '\0') {
        fprintf(stderr, CONV_PREFIX "DATABASE_URL is not set (postgresql://user:password@host:port/db)\n");
        goto cleanup;
    }
    conn = cmn_pg_connect(url, CONV_CONNECT_TIMEOUT_MS, err, sizeof err);
    if (conn == NULL) {
        fprintf(stderr, CONV_PREFIX "%s\n", err);
        goto cleanup;
    }
    const char *params[4] = {tenant, channel, hash, ts};
    res = PQexecParams(conn, SQL_SET, 4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fprintf(stderr, CONV_PREFIX "cannot set the conversation: %s", PQerrorMessage(conn));
        goto cleanup;
    }
    if (PQgetisnull(res, 0, 0))
        printf("conversation set: tenant %s, channel %s, last inbound %s\n", tenant, channel, ts);
    else
        printf("conversation set: tenant %s, channel %s, last inbound %s, window open until %s\n", tenant, channel,
               ts, PQgetvalue(res, 0, 0));
    exit_code = 0;
cleanup:
    if (exit_code == 2)
        usage(stderr);
    OPENSSL_cleanse(hash, sizeof hash);
    PQclear(res);
    PQfinish(conn);
    return exit_code;
}

int crmctl_conversations_main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "set") == 0)
        return conversations_set(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
