/* test_chaos.c - the fleet under faults: every request the ingest API
 * accepted (HTTP 202) must end in exactly one terminal state in PostgreSQL,
 * none may be lost, and provider-side duplicates may only come from
 * messages that were in flight at a kill. See docs/chaos.md.
 *
 * The fleet is `crmctl dev up` (embedded Kafka with its fault-injection
 * channel, private PostgreSQL, the three sandboxes, every service), started
 * once for this binary with a provider storm in every sandbox: Twilio and
 * Meta answer 30 % of the sends with a 500, 10 % with a 429 and Retry-After,
 * and hold 5 % past the workers' HTTP time limit; the SMTP sandbox refuses
 * 20 % of the recipients with 451 and drops 5 % of the connections at the
 * end of DATA. Each scenario sends its own requests (email, SMS and
 * WhatsApp, one channel each) from a loader thread at a steady pace while
 * the main thread injects its faults, then polls PostgreSQL until every
 * accepted request is terminal or a generous deadline passes.
 *
 * Scenarios: storm (the storm alone), process_kills (SIGKILL of the router,
 * each worker and the projector, each restarted), postgres_restart (an
 * immediate shutdown of PostgreSQL, then a start), broker_faults (a slow
 * broker, fetch request errors, one broker down for a few seconds).
 *
 * What is asserted, per scenario:
 *   - lost = 0: every accepted request has a communications row whose
 *     status is terminal (cmn_status_is_terminal: sent, delivered, read,
 *     opened, clicked, failed, suppressed, rejected, dead);
 *   - conflicting outcomes <= the same bound: a communication
 *     whose events hold both a success (sent/delivered/read/...) and a
 *     failure (failed/dead/suppressed/rejected). Its row still has one
 *     status (the projector's rank picks it), but the history says two
 *     things. It happens when a worker is killed after producing an
 *     attempt's outcome and before committing its offset: the attempt is
 *     redone and may end otherwise (dead, then sent on the redo), or when
 *     an ambiguous timeout was accepted after all (its webhooks say sent
 *     while the later attempts fail). Only what makes a duplicate can
 *     make it;
 *   - phantoms = 0: no communication is `sent` (or later) without the
 *     provider having accepted it;
 *   - duplicates <= in flight at the kills + ambiguous timeouts. A
 *     duplicate is a second accepted send of one communication and hop at
 *     a provider (the sandboxes count accepted sends per communication id).
 *     Two things can make one:
 *     (1) a redo after a kill. A service only ever redoes work it had not
 *     committed, so the messages that can be redone are the killed
 *     service's consumer-group lag at that moment: for every group of the
 *     service, over the topics it reads, the high watermark minus the
 *     committed offset (or minus the low watermark where the group never
 *     committed). The test reads it right after the SIGKILL: the dead
 *     process commits nothing more, and whatever was produced since only
 *     adds, so it is an upper bound.
 *     (2) a send the worker gave up on (its HTTP time limit passed) that
 *     the provider still accepted: a real provider does the same, and
 *     neither Twilio's nor Meta's send API takes an idempotency key. The
 *     storm's own holds are never accepted, but a hold stalls the other
 *     connections of its sandbox thread, and one of those may be accepted
 *     after the worker timed out. Every such attempt is an event with
 *     error_code "timeout", so their count bounds these duplicates.
 *     Scenarios without kills may only have (2);
 * Speed is never asserted: the deadline only stops a hung run.
 *
 * CRM_CHAOS_LONG=1 (make chaos, tools/chaos/run.sh) runs the same
 * scenarios with more requests, a longer load, repeated kills and longer
 * outages; CRM_CHAOS_FIGURES=FILE appends each scenario's figures as one
 * JSON line to FILE. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crm/status.h"
#include "th_fleet.h"
#include "th_pg.h"
#include "th_proc.h"

#define CHAOS_MAX_REQUESTS 20000
#define CHAOS_MAX_FAULTS 32
#define CHAOS_WA_CLIENTS 20
#define CHAOS_ROWS_MAX (8u << 20)

/* The environment of every crmctl call (dev up and the restarts alike). */
static char *const CHAOS_ENV[] = {
    "KAFKA_BROKERS=",
    "DATABASE_URL=",
    "CRM_DEV_STORM_TWILIO=500=0.30,429=0.10,timeout=0.05",
    "CRM_DEV_STORM_META=500=0.30,429=0.10,timeout=0.05",
    "CRM_DEV_STORM_SMTP=451=0.20,drop=0.05",
    "CRM_DEV_STORM_SEED=20261122",
    "CRM_DEV_STORM_RETRY_AFTER_S=1",
    /* A held answer outlives the workers' HTTP time limit. */
    "CRM_DEV_STORM_TIMEOUT_MS=2500",
    "TWILIO_TIMEOUT_MS=1500",
    "WHATSAPP_TIMEOUT_MS=1500",
    /* A killed member's partitions move on after this long. */
    "KAFKA_SESSION_TIMEOUT_MS=6000",
    /* Retries sooner than production, so a run converges in minutes. */
    "RETRY_BASE_MS=1000",
    "RETRY_CAP_MS=8000",
    NULL,
};

static int chaos_long(void)
{
    const char *v = getenv("CRM_CHAOS_LONG");
    return v != NULL && strcmp(v, "1") == 0;
}

static void chaos_dir(char *out, size_t outlen)
{
    const char *fixed = getenv("CRM_CHAOS_DIR");
    if (fixed && *fixed)
        snprintf(out, outlen, "%s", fixed);
    else
        snprintf(out, outlen, "%s/test-chaos", CRM_BINARY_DIR);
}

/* The fleet as the runner started it; the port base is the ingest port. */
static int chaos_fleet(th_fleet_t *f)
{
    char dir[512];
    chaos_dir(dir, sizeof(dir));
    if (th_fleet_init(f, dir, 0, CHAOS_ENV) != 0 || th_fleet_load(f) != 0)
        return -1;
    const char *colon = strrchr(f->ingest_url, ':');
    f->port_base = colon ? atoi(colon + 1) : 0;
    return f->port_base > 0 ? 0 : -1;
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    th_fleet_t f;
    char dir[512];
    chaos_dir(dir, sizeof(dir));
    /* Spread concurrent runs (normal and sanitizer builds) over port ranges,
     * away from the e2e suite's 21000-29000. */
    int base = 12000 + (int)(getpid() % 400) * 20;
    if (th_fleet_init(&f, dir, base, CHAOS_ENV) != 0 || th_fleet_up(&f) != 0) {
        fprintf(stderr, "chaos: the fleet did not start\n");
        exit(1);
    }
    th_fleet_free(&f);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    th_fleet_t f;
    char dir[512];
    chaos_dir(dir, sizeof(dir));
    if (th_fleet_init(&f, dir, 0, CHAOS_ENV) == 0) {
        th_fleet_down(&f);
        th_fleet_free(&f);
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* ------------------------------------------------------------ scenarios */

typedef enum fault_kind {
    FAULT_KILL,   /* crmctl dev kill <target>, restart after down_ms */
    FAULT_SLOW,   /* broker <target> answers every request count ms late, for down_ms */
    FAULT_FETCH,  /* count fetch request errors */
    FAULT_BROKER  /* broker <target> down for down_ms */
} fault_kind_t;

typedef struct chaos_fault {
    int at_ms; /* after the load starts */
    fault_kind_t kind;
    const char *target;
    int down_ms;
    int count;
} chaos_fault_t;

typedef struct chaos_scenario {
    const char *name;
    int requests;
    int batch;   /* requests per POST */
    int pace_ms; /* between two POSTs */
    chaos_fault_t faults[CHAOS_MAX_FAULTS];
    int nfaults;
} chaos_scenario_t;

/* What happened at one kill, for the figures. */
typedef struct kill_record {
    char target[32];
    int64_t in_flight;
    int at_ms;
} kill_record_t;

/* The loader thread's state. Written by the loader, read by the main
 * thread after the join (accepted_so_far also during the run). */
typedef struct loader {
    const th_fleet_t *fleet;
    const chaos_scenario_t *sc;
    char prefix[64]; /* request ids are <prefix><k> */
    char tag[32];    /* in email addresses */
    int digit;       /* the scenario's digit in phone numbers */
    unsigned char accepted[CHAOS_MAX_REQUESTS];
    atomic_int accepted_so_far;
    int posts, retried_posts, gave_up;
} loader_t;

static const char *channel_of(int k)
{
    switch (k % 4) {
    case 2:
        return "sms";
    case 3:
        return "whatsapp";
    default:
        return "email";
    }
}

/* "+3361" + digit + k (5 digits) + "2": a French mobile number whose end
 * matches none of the sandboxes' scripted suffixes (none ends in 2). */
static void phone_of(const loader_t *l, int k, char *out, size_t outlen)
{
    snprintf(out, outlen, "+3361%d%05d2", l->digit, k);
}

static void email_of(const loader_t *l, int k, char *out, size_t outlen)
{
    snprintf(out, outlen, "k%d.%s@chaos.example.com", k, l->tag);
}

static size_t request_json(const loader_t *l, int k, char *out, size_t outlen)
{
    char phone[32], email[128];
    const char *ch = channel_of(k);
    if (strcmp(ch, "email") == 0) {
        email_of(l, k, email, sizeof(email));
        return (size_t)snprintf(out, outlen,
                                "{\"request_id\":\"%s%d\",\"client_id\":\"chaos-c-%d\",\"message_type\":\"welcome\","
                                "\"channels\":[\"email\"],\"recipient\":{\"name\":\"K %d\",\"email\":\"%s\","
                                "\"locale\":\"en\"}}",
                                l->prefix, k, k % 37, k, email);
    }
    phone_of(l, k, phone, sizeof(phone));
    if (strcmp(ch, "sms") == 0)
        return (size_t)snprintf(out, outlen,
                                "{\"request_id\":\"%s%d\",\"client_id\":\"chaos-c-%d\","
                                "\"message_type\":\"password_reset\",\"channels\":[\"sms\"],"
                                "\"recipient\":{\"name\":\"Ana\",\"phone\":\"%s\",\"locale\":\"en\"},"
                                "\"context\":{\"reset_url\":\"https://app.example.com/r/1\","
                                "\"expires_in_minutes\":30}}",
                                l->prefix, k, k % 37, phone);
    return (size_t)snprintf(out, outlen,
                            "{\"request_id\":\"%s%d\",\"client_id\":\"chaos-wa-%d\","
                            "\"message_type\":\"appointment_reminder\",\"channels\":[\"whatsapp\"],"
                            "\"recipient\":{\"name\":\"Inès\",\"whatsapp\":\"%s\",\"locale\":\"fr\"},"
                            "\"context\":{\"appointment\":{\"date\":\"2026-12-01\",\"time\":\"10:30\"}}}",
                            l->prefix, k, k % CHAOS_WA_CLIENTS, phone);
}

/* Posts every batch, in order, at the scenario's pace. A batch that is not
 * answered 202 (Kafka unavailable: 503) is posted again with the same
 * request ids, as an upstream service would, for up to two minutes; only a
 * 202 counts as accepted. */
static void *loader_main(void *arg)
{
    loader_t *l = arg;
    const chaos_scenario_t *sc = l->sc;
    char url[300];
    snprintf(url, sizeof(url), "%s/v1/communications", l->fleet->ingest_url);
    size_t cap = (size_t)sc->batch * 1024 + 64;
    char *body = malloc(cap);
    char *answer = malloc(1 << 16);
    if (!body || !answer)
        goto out;
    int64_t next = now_ms();
    for (int first = 0; first < sc->requests; first += sc->batch) {
        int last = first + sc->batch < sc->requests ? first + sc->batch : sc->requests;
        size_t off = (size_t)snprintf(body, cap, "{\"requests\":[");
        for (int k = first; k < last; k++) {
            if (k > first)
                body[off++] = ',';
            off += request_json(l, k, body + off, cap - off);
        }
        snprintf(body + off, cap - off, "]}");
        int64_t give_up = now_ms() + 120000;
        long status = 0;
        for (;;) {
            l->posts++;
            if (th_http("POST", url, body, "application/json", &status, answer, 1 << 16) == 0 && status == 202)
                break;
            if (now_ms() > give_up) {
                l->gave_up += last - first;
                break;
            }
            l->retried_posts++;
            sleep_ms(500);
        }
        if (status == 202) {
            for (int k = first; k < last; k++)
                l->accepted[k] = 1;
            atomic_fetch_add(&l->accepted_so_far, last - first);
        }
        next += sc->pace_ms;
        sleep_ms(next - now_ms());
    }
out:
    free(body);
    free(answer);
    return NULL;
}

/* ------------------------------------------------------------ the faults */

/* The consumer groups of a service and the topics each reads. */
static int groups_of(const char *service, const char **groups, const char *const **topics)
{
    static const char *const REQUESTS[] = {"crm.requests", NULL};
    static const char *const DEFER[] = {"crm.defer.", NULL};
    static const char *const SEND_EMAIL[] = {"crm.send.email", NULL};
    static const char *const RETRY_EMAIL[] = {"crm.retry.email.", NULL};
    static const char *const SEND_SMS[] = {"crm.send.sms", NULL};
    static const char *const RETRY_SMS[] = {"crm.retry.sms.", NULL};
    static const char *const SEND_WA[] = {"crm.send.whatsapp", NULL};
    static const char *const RETRY_WA[] = {"crm.retry.whatsapp.", NULL};
    if (strcmp(service, "router") == 0) {
        groups[0] = "crm-router", topics[0] = REQUESTS;
        groups[1] = "crm-router-defer", topics[1] = DEFER;
        return 2;
    }
    if (strcmp(service, "email-worker") == 0) {
        groups[0] = "crm-email-worker", topics[0] = SEND_EMAIL;
        groups[1] = "crm-email-worker-retry", topics[1] = RETRY_EMAIL;
        return 2;
    }
    if (strcmp(service, "sms-worker") == 0) {
        groups[0] = "crm-sms-worker", topics[0] = SEND_SMS;
        groups[1] = "crm-sms-worker-retry", topics[1] = RETRY_SMS;
        return 2;
    }
    if (strcmp(service, "whatsapp-worker") == 0) {
        groups[0] = "crm-whatsapp-worker", topics[0] = SEND_WA;
        groups[1] = "crm-whatsapp-worker-retry", topics[1] = RETRY_WA;
        return 2;
    }
    /* The projector and PostgreSQL send nothing to a provider, so nothing
     * they redo can be a provider-side duplicate. */
    return 0;
}

static int64_t in_flight_of(const th_fleet_t *f, const char *service)
{
    const char *groups[4];
    const char *const *topics[4];
    int n = groups_of(service, groups, topics);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        int64_t lag = 0;
        cr_assert_eq(th_fleet_group_lag(f->brokers, groups[i], topics[i], &lag), 0, "lag of %s", groups[i]);
        total += lag;
    }
    return total;
}

static void control(const th_fleet_t *f, const char *path)
{
    char url[400], out[4096];
    long status = 0;
    snprintf(url, sizeof(url), "%s%s", f->kafka_control, path);
    cr_assert_eq(th_http("POST", url, "", "application/json", &status, out, sizeof(out)), 0, "POST %s", url);
    cr_assert_eq(status, 200, "POST %s: %ld %s", url, status, out);
}

static void crmctl(const th_fleet_t *f, const char *sub, const char *target)
{
    static char out[16384];
    int rc = th_fleet_crmctl(f, sub, target, out, sizeof(out), 120000);
    fprintf(stderr, "chaos: crmctl dev %s %s: %s", sub, target, out);
    cr_assert_eq(rc, 0, "crmctl dev %s %s: %s", sub, target, out);
}

/* ---------------------------------------------------------- the figures */

typedef struct row {
    char cid[40];
    char status[16];
    char channel[12];
    int present;
} row_t;

typedef struct figures {
    int accepted, terminal, lost, conflicts, phantoms;
    int64_t duplicates, in_flight_total, provider_accepted, client_timeouts;
    char by_status[512];
    char lost_examples[512];
    char dup_examples[512];
} figures_t;

/* Reads the scenario's rows: one line "k cid status channel" each. */
static void read_rows(const th_fleet_t *f, const loader_t *l, row_t *rows)
{
    char sql[512];
    char *out = malloc(CHAOS_ROWS_MAX);
    cr_assert_not_null(out);
    snprintf(sql, sizeof(sql),
             "select coalesce(string_agg(substr(request_id, %zu) || ' ' || communication_id || ' ' || status || ' ' || "
             "coalesce(channel, '-'), E'\\n'), '') from communications where request_id like '%s%%'",
             strlen(l->prefix) + 1, l->prefix);
    cr_assert_eq(th_pg_query_value(f->database_url, sql, out, CHAOS_ROWS_MAX), 0, "read the rows");
    for (int k = 0; k < l->sc->requests; k++)
        rows[k].present = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int k = -1;
        char cid[40], status[16], channel[12];
        if (sscanf(line, "%d %39s %15s %11s", &k, cid, status, channel) != 4 || k < 0 || k >= l->sc->requests)
            continue;
        snprintf(rows[k].cid, sizeof(rows[k].cid), "%s", cid);
        snprintf(rows[k].status, sizeof(rows[k].status), "%s", status);
        snprintf(rows[k].channel, sizeof(rows[k].channel), "%s", channel);
        rows[k].present = 1;
    }
    free(out);
}

static int terminal(const char *status)
{
    cmn_status_t s;
    return cmn_status_parse(status, &s) == 0 && cmn_status_is_terminal(s);
}

static int success(const char *status)
{
    return strcmp(status, "sent") == 0 || strcmp(status, "delivered") == 0 || strcmp(status, "read") == 0 ||
           strcmp(status, "opened") == 0 || strcmp(status, "clicked") == 0;
}

static int count_terminal(const th_fleet_t *f, const loader_t *l, row_t *rows)
{
    read_rows(f, l, rows);
    int n = 0;
    for (int k = 0; k < l->sc->requests; k++)
        n += l->accepted[k] && rows[k].present && terminal(rows[k].status);
    return n;
}

/* GET <sandbox>/_sandbox/accepted: by_id, a new reference. */
static json_object *sandbox_accepted(const char *base)
{
    char url[300];
    long status = 0;
    char *out = malloc(CHAOS_ROWS_MAX);
    cr_assert_not_null(out);
    snprintf(url, sizeof(url), "%s/_sandbox/accepted", base);
    cr_assert_eq(th_http("GET", url, NULL, NULL, &status, out, CHAOS_ROWS_MAX), 0, "GET %s", url);
    cr_assert_eq(status, 200, "GET %s: %ld", url, status);
    json_object *j = json_tokener_parse(out);
    free(out);
    cr_assert_not_null(j, "the sandbox's counts are JSON");
    json_object *by = NULL;
    cr_assert(json_object_object_get_ex(j, "by_id", &by));
    json_object_get(by);
    json_object_put(j);
    return by;
}

/* Appends "<a><b> " to buf while it has room: a few examples for a message. */
static void note(char *buf, size_t len, const char *a, int64_t b)
{
    size_t used = strlen(buf);
    if (used + 80 < len)
        snprintf(buf + used, len - used, "%s%lld ", a, (long long)b);
}

/* Provider-side accepted sends per request, from the three sandboxes. */
static void provider_counts(const th_fleet_t *f, const loader_t *l, const row_t *rows, int *sends)
{
    json_object *twilio = sandbox_accepted(f->twilio_url);
    json_object *meta = sandbox_accepted(f->meta_url);
    char key[64];
    for (int k = 0; k < l->sc->requests; k++) {
        sends[k] = 0;
        if (!rows[k].present)
            continue;
        json_object *c = NULL;
        if (strcmp(channel_of(k), "sms") == 0) {
            snprintf(key, sizeof(key), "%s/0", rows[k].cid);
            if (json_object_object_get_ex(twilio, key, &c))
                sends[k] = json_object_get_int(c);
        } else if (strcmp(channel_of(k), "whatsapp") == 0) {
            /* The worker's biz_opaque_callback_data, by which the sandbox
             * counts, is "<id>:<hop>:<attempt>" (plain "<id>" from older
             * workers): every attempt of hop 0 is a send of this request. */
            snprintf(key, sizeof(key), "%s:0:", rows[k].cid);
            json_object_object_foreach(meta, id, count)
            {
                if (strcmp(id, rows[k].cid) == 0 || strncmp(id, key, strlen(key)) == 0)
                    sends[k] += json_object_get_int(count);
            }
        }
    }
    json_object_put(twilio);
    json_object_put(meta);
    /* Email: one line per accepted message, "<queue id> <recipient>". */
    FILE *fp = fopen(f->smtp_accepted_log, "r");
    if (fp == NULL)
        return;
    char line[1024], suffix[96];
    snprintf(suffix, sizeof(suffix), ".%s@chaos.example.com", l->tag);
    while (fgets(line, sizeof(line), fp)) {
        char *rcpt = strchr(line, ' ');
        if (!rcpt)
            continue;
        rcpt++;
        rcpt[strcspn(rcpt, "\n")] = '\0';
        int k = -1;
        char *end = strstr(rcpt, suffix);
        if (rcpt[0] == 'k' && end != NULL && end[strlen(suffix)] == '\0' && sscanf(rcpt + 1, "%d", &k) == 1 &&
            k >= 0 && k < l->sc->requests)
            sends[k]++;
    }
    fclose(fp);
}

static int count_conflicts(const th_fleet_t *f, const loader_t *l)
{
    char sql[1024], got[64];
    snprintf(sql, sizeof(sql),
             "select count(*) from (select e.communication_id from communication_events e "
             "join communications c on c.communication_id = e.communication_id where c.request_id like '%s%%' "
             "group by e.communication_id having bool_or(e.status in ('sent','delivered','read','opened','clicked')) "
             "and bool_or(e.status in ('failed','dead','suppressed','rejected'))) x",
             l->prefix);
    cr_assert_eq(th_pg_query_value(f->database_url, sql, got, sizeof(got)), 0);
    return atoi(got);
}

/* Attempts the workers gave up on at their HTTP time limit. */
static int64_t count_client_timeouts(const th_fleet_t *f, const loader_t *l)
{
    char sql[512], got[32];
    snprintf(sql, sizeof(sql),
             "select count(*) from communication_events e join communications c on c.communication_id = "
             "e.communication_id where c.request_id like '%s%%' and e.error_code = 'timeout'",
             l->prefix);
    cr_assert_eq(th_pg_query_value(f->database_url, sql, got, sizeof(got)), 0);
    return atoll(got);
}

static void status_breakdown(const th_fleet_t *f, const loader_t *l, char *out, size_t outlen)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "select coalesce(string_agg(status || ':' || n, ' ' order by status), '') from (select status, count(*) n "
             "from communications where request_id like '%s%%' group by status) x",
             l->prefix);
    cr_assert_eq(th_pg_query_value(f->database_url, sql, out, outlen), 0);
}

static void emit_figures(const chaos_scenario_t *sc, const loader_t *l, const figures_t *fig,
                         const kill_record_t *kills, int nkills, int64_t wall_ms)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "scenario", json_object_new_string(sc->name));
    json_object_object_add(o, "mode", json_object_new_string(chaos_long() ? "long" : "short"));
    json_object_object_add(o, "requests", json_object_new_int(sc->requests));
    json_object_object_add(o, "accepted", json_object_new_int(fig->accepted));
    json_object_object_add(o, "not_accepted", json_object_new_int(l->gave_up));
    json_object_object_add(o, "posts_retried", json_object_new_int(l->retried_posts));
    json_object_object_add(o, "terminal", json_object_new_int(fig->terminal));
    json_object_object_add(o, "by_status", json_object_new_string(fig->by_status));
    json_object_object_add(o, "lost", json_object_new_int(fig->lost));
    json_object_object_add(o, "conflicting_outcomes", json_object_new_int(fig->conflicts));
    json_object_object_add(o, "phantoms", json_object_new_int(fig->phantoms));
    json_object_object_add(o, "provider_accepted_sends", json_object_new_int64(fig->provider_accepted));
    json_object_object_add(o, "provider_duplicates", json_object_new_int64(fig->duplicates));
    json_object_object_add(o, "in_flight_at_kills", json_object_new_int64(fig->in_flight_total));
    json_object_object_add(o, "client_timeouts", json_object_new_int64(fig->client_timeouts));
    json_object *ka = json_object_new_array();
    for (int i = 0; i < nkills; i++) {
        json_object *k = json_object_new_object();
        json_object_object_add(k, "target", json_object_new_string(kills[i].target));
        json_object_object_add(k, "at_ms", json_object_new_int(kills[i].at_ms));
        json_object_object_add(k, "in_flight", json_object_new_int64(kills[i].in_flight));
        json_object_array_add(ka, k);
    }
    json_object_object_add(o, "kills", ka);
    json_object_object_add(o, "wall_ms", json_object_new_int64(wall_ms));
    const char *line = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    fprintf(stderr, "chaos figures: %s\n", line);
    const char *path = getenv("CRM_CHAOS_FIGURES");
    if (path && *path) {
        FILE *fp = fopen(path, "a");
        if (fp) {
            fprintf(fp, "%s\n", line);
            fclose(fp);
        }
    }
    json_object_put(o);
}

/* Gives the WhatsApp clients of the scenarios opt-in consent through the
 * preferences API (the router suppresses WhatsApp without it) and waits
 * until the projection has them. */
static void consent_whatsapp_clients(const th_fleet_t *f)
{
    char url[300], out[4096], sql[256], got[32];
    const char *body = "{\"whatsapp_consent\":{\"granted\":true,\"at\":\"2026-03-01T10:00:00Z\","
                       "\"source\":\"web_form\"}}";
    for (int i = 0; i < CHAOS_WA_CLIENTS; i++) {
        long status = 0;
        snprintf(url, sizeof(url), "%s/v1/clients/chaos-wa-%d/preferences", f->ingest_url, i);
        for (int tries = 0; tries < 60; tries++) {
            if (th_http("PUT", url, body, "application/json", &status, out, sizeof(out)) == 0 && status == 200)
                break;
            sleep_ms(500);
        }
        cr_assert_eq(status, 200, "PUT %s: %ld %s", url, status, out);
    }
    snprintf(sql, sizeof(sql), "select count(*) from client_preferences where client_id like 'chaos-wa-%%'");
    char want[16];
    snprintf(want, sizeof(want), "%d", CHAOS_WA_CLIENTS);
    for (int waited = 0; waited < 120000; waited += 250) {
        if (th_pg_query_value(f->database_url, sql, got, sizeof(got)) == 0 && strcmp(got, want) == 0)
            return;
        sleep_ms(250);
    }
    cr_assert_fail("the WhatsApp clients' consent was not projected (%s of %d)", got, CHAOS_WA_CLIENTS);
}

/* ---------------------------------------------------------------- a run */

static void run_scenario(const chaos_scenario_t *sc)
{
    th_fleet_t f;
    cr_assert_eq(chaos_fleet(&f), 0, "the fleet's env file is readable");
    cr_assert(sc->requests <= CHAOS_MAX_REQUESTS);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    consent_whatsapp_clients(&f);
    /* Let the router's preferences cache pick up the consent. */
    sleep_ms(2000);

    loader_t *l = calloc(1, sizeof(*l));
    row_t *rows = calloc((size_t)sc->requests, sizeof(*rows));
    int *sends = calloc((size_t)sc->requests, sizeof(*sends));
    cr_assert(l && rows && sends);
    l->fleet = &f;
    l->sc = sc;
    int tag = (int)getpid();
    snprintf(l->prefix, sizeof(l->prefix), "chaos-%d-%s-", tag, sc->name);
    snprintf(l->tag, sizeof(l->tag), "%d-%c%c", tag, sc->name[0], sc->name[1]);
    l->digit = 1 + (int)(strlen(sc->name) + (size_t)sc->name[0]) % 9;
    atomic_init(&l->accepted_so_far, 0);

    fprintf(stderr, "chaos: scenario %s (%s): %d requests, %d faults\n", sc->name, chaos_long() ? "long" : "short",
            sc->requests, sc->nfaults);
    int64_t t0 = now_ms();
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, loader_main, l), 0);

    kill_record_t kills[CHAOS_MAX_FAULTS];
    int nkills = 0;
    for (int i = 0; i < sc->nfaults; i++) {
        const chaos_fault_t *ft = &sc->faults[i];
        sleep_ms(t0 + ft->at_ms - now_ms());
        char path[128];
        switch (ft->kind) {
        case FAULT_KILL:
            crmctl(&f, "kill", ft->target);
            /* Right after the SIGKILL: see the header comment. */
            kills[nkills].in_flight = in_flight_of(&f, ft->target);
            kills[nkills].at_ms = (int)(now_ms() - t0);
            snprintf(kills[nkills].target, sizeof(kills[nkills].target), "%s", ft->target);
            fprintf(stderr, "chaos: %s killed at %d ms with %lld messages in flight (%d accepted so far)\n",
                    ft->target, kills[nkills].at_ms, (long long)kills[nkills].in_flight,
                    atomic_load(&l->accepted_so_far));
            nkills++;
            sleep_ms(ft->down_ms);
            crmctl(&f, "restart", ft->target);
            break;
        case FAULT_SLOW:
            cr_assert(f.kafka_control[0] != '\0', "the embedded Kafka serves its fault-injection channel");
            snprintf(path, sizeof(path), "/brokers/%s/rtt?ms=%d", ft->target, ft->count);
            control(&f, path);
            fprintf(stderr, "chaos: broker %s slow (%d ms) at %lld ms for %d ms\n", ft->target, ft->count,
                    (long long)(now_ms() - t0), ft->down_ms);
            sleep_ms(ft->down_ms);
            snprintf(path, sizeof(path), "/brokers/%s/rtt?ms=0", ft->target);
            control(&f, path);
            break;
        case FAULT_FETCH:
            cr_assert(f.kafka_control[0] != '\0', "the embedded Kafka serves its fault-injection channel");
            snprintf(path, sizeof(path), "/faults/fetch?count=%d&error=NOT_LEADER_FOR_PARTITION", ft->count);
            control(&f, path);
            fprintf(stderr, "chaos: %d fetch request errors queued at %lld ms\n", ft->count, (long long)(now_ms() - t0));
            break;
        case FAULT_BROKER:
            cr_assert(f.kafka_control[0] != '\0', "the embedded Kafka serves its fault-injection channel");
            snprintf(path, sizeof(path), "/brokers/%s/down", ft->target);
            control(&f, path);
            fprintf(stderr, "chaos: broker %s down at %lld ms for %d ms\n", ft->target, (long long)(now_ms() - t0),
                    ft->down_ms);
            sleep_ms(ft->down_ms);
            snprintf(path, sizeof(path), "/brokers/%s/up", ft->target);
            control(&f, path);
            break;
        }
    }
    cr_assert_eq(pthread_join(th, NULL), 0);
    if (f.kafka_control[0] != '\0')
        control(&f, "/faults/clear");

    figures_t fig;
    memset(&fig, 0, sizeof(fig));
    for (int k = 0; k < sc->requests; k++)
        fig.accepted += l->accepted[k];
    cr_assert_eq(l->gave_up, 0, "every batch was accepted in the end (%d requests were not)", l->gave_up);

    /* Poll PostgreSQL until every accepted request is terminal; the
     * deadline stops a hung run, it is not a speed requirement. */
    int64_t deadline = now_ms() + (chaos_long() ? 900000 : 300000);
    do {
        fig.terminal = count_terminal(&f, l, rows);
        if (fig.terminal == fig.accepted)
            break;
        sleep_ms(1000);
    } while (now_ms() < deadline);
    /* The receipts and late duplicates a kill can cause arrive a little
     * after the last terminal state: give them a moment, then count. */
    sleep_ms(3000);
    fig.terminal = count_terminal(&f, l, rows);
    int64_t wall = now_ms() - t0;

    for (int k = 0; k < sc->requests; k++) {
        if (!l->accepted[k])
            continue;
        if (!rows[k].present || !terminal(rows[k].status)) {
            fig.lost++;
            note(fig.lost_examples, sizeof(fig.lost_examples), rows[k].present ? rows[k].status : "missing:", k);
        }
    }
    provider_counts(&f, l, rows, sends);
    for (int k = 0; k < sc->requests; k++) {
        fig.provider_accepted += sends[k];
        if (sends[k] > 1) {
            fig.duplicates += sends[k] - 1;
            note(fig.dup_examples, sizeof(fig.dup_examples), channel_of(k), k);
        }
        if (l->accepted[k] && rows[k].present && success(rows[k].status) && sends[k] == 0)
            fig.phantoms++;
    }
    for (int i = 0; i < nkills; i++)
        fig.in_flight_total += kills[i].in_flight;
    fig.conflicts = count_conflicts(&f, l);
    fig.client_timeouts = count_client_timeouts(&f, l);
    status_breakdown(&f, l, fig.by_status, sizeof(fig.by_status));
    emit_figures(sc, l, &fig, kills, nkills, wall);

    cr_expect_eq(fig.lost, 0, "%s: %d accepted requests lost (not terminal: %s)", sc->name, fig.lost,
                 fig.lost_examples);
    int64_t bound = fig.in_flight_total + fig.client_timeouts;
    cr_expect(fig.conflicts <= bound,
              "%s: %d communications with both a success and a failure, more than the %lld in flight at the kills "
              "plus %lld timed-out attempts",
              sc->name, fig.conflicts, (long long)fig.in_flight_total, (long long)fig.client_timeouts);
    cr_expect_eq(fig.phantoms, 0, "%s: %d communications sent without an accepted provider send", sc->name,
                 fig.phantoms);
    cr_expect(fig.duplicates <= bound,
              "%s: %lld provider-side duplicates, more than the %lld messages in flight at the kills plus %lld "
              "timed-out attempts (%s)",
              sc->name, (long long)fig.duplicates, (long long)fig.in_flight_total, (long long)fig.client_timeouts,
              fig.dup_examples);
    cr_expect(fig.provider_accepted > 0, "%s: the providers accepted sends at all", sc->name);

    free(sends);
    free(rows);
    free(l);
    th_fleet_free(&f);
}

/* --------------------------------------------------------------- tests */

TestSuite(chaos, .timeout = 1800);

Test(chaos, storm)
{
    chaos_scenario_t sc = {.name = "storm", .requests = chaos_long() ? 1200 : 120, .batch = 10, .pace_ms = 250};
    run_scenario(&sc);
}

Test(chaos, process_kills)
{
    static const char *const TARGETS[] = {"router", "email-worker", "sms-worker", "whatsapp-worker", "projector"};
    int lng = chaos_long();
    chaos_scenario_t sc = {.name = "kills", .requests = lng ? 3000 : 400, .batch = 10, .pace_ms = lng ? 250 : 500};
    /* Short: each process once, 4 s apart. Long: three rounds. */
    int rounds = lng ? 3 : 1;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < 5; i++) {
            chaos_fault_t *ft = &sc.faults[sc.nfaults++];
            ft->kind = FAULT_KILL;
            ft->target = TARGETS[i];
            ft->at_ms = 2000 + (r * 5 + i) * (lng ? 5000 : 4000);
            ft->down_ms = lng ? 2000 : 500;
        }
    }
    run_scenario(&sc);
}

Test(chaos, postgres_restart)
{
    int lng = chaos_long();
    chaos_scenario_t sc = {.name = "postgres", .requests = lng ? 1500 : 200, .batch = 10, .pace_ms = lng ? 250 : 500};
    int restarts = lng ? 3 : 1;
    for (int r = 0; r < restarts; r++)
        sc.faults[sc.nfaults++] =
            (chaos_fault_t){.at_ms = 3000 + r * 12000, .kind = FAULT_KILL, .target = "postgres",
                            .down_ms = lng ? 5000 : 3000};
    run_scenario(&sc);
}

Test(chaos, broker_faults)
{
    int lng = chaos_long();
    chaos_scenario_t sc = {.name = "broker", .requests = lng ? 1500 : 200, .batch = 10, .pace_ms = lng ? 250 : 500};
    int rounds = lng ? 3 : 1;
    /* No produce request errors: the mock cluster answers them in a way no
     * real broker does and loses acknowledged writes (see docs/chaos.md,
     * "What the suite found"). A slow partition leader (every answer 1 s
     * late) holds the workers' batches on their acknowledgements and slows
     * every consumer's fetches, as an overloaded broker does. */
    for (int r = 0; r < rounds; r++) {
        int base = 2000 + r * 12000;
        sc.faults[sc.nfaults++] = (chaos_fault_t){.at_ms = base, .kind = FAULT_SLOW, .target = r % 2 ? "3" : "2",
                                                  .count = 1000, .down_ms = 1500};
        sc.faults[sc.nfaults++] = (chaos_fault_t){.at_ms = base + 2000, .kind = FAULT_FETCH, .count = lng ? 200 : 50};
        sc.faults[sc.nfaults++] = (chaos_fault_t){.at_ms = base + 4000, .kind = FAULT_BROKER,
                                                  .target = r % 2 ? "2" : "1", .down_ms = lng ? 6000 : 3000};
    }
    run_scenario(&sc);
}
