/* Unit tests for the topic table (partitions, topic configs, look-ups) and
 * the traceparent generator of crm/kafka.h. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/kafka.h"

static const cmn_kafka_topic_spec_t *find(const cmn_kafka_topic_spec_t *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    }
    return NULL;
}

Test(kafka_topics, lists_every_topic_of_the_design_once)
{
    static const char *const expected[] = {
        "crm.requests",          "crm.defer.1m",           "crm.defer.10m",         "crm.defer.1h",
        "crm.send.email",        "crm.send.sms",           "crm.send.whatsapp",     "crm.retry.email.5s",
        "crm.retry.email.30s",   "crm.retry.email.5m",     "crm.retry.email.30m",   "crm.retry.sms.5s",
        "crm.retry.sms.30s",     "crm.retry.sms.5m",       "crm.retry.sms.30m",     "crm.retry.whatsapp.5s",
        "crm.retry.whatsapp.30s", "crm.retry.whatsapp.5m", "crm.retry.whatsapp.30m", "crm.status",
        "crm.inbound",           "crm.preferences",        "crm.dlq",
    };
    size_t n = 0;
    const cmn_kafka_topic_spec_t *t = cmn_kafka_topics(&n);
    cr_assert_not_null(t);
    cr_assert_eq(n, sizeof(expected) / sizeof(expected[0]), "got %zu topics", n);
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        cr_assert_not_null(find(t, n, expected[i]), "missing %s", expected[i]);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++)
            cr_assert_str_neq(t[i].name, t[j].name, "duplicate %s", t[i].name);
    }
}

Test(kafka_topics, every_topic_has_twelve_partitions)
{
    size_t n = 0;
    const cmn_kafka_topic_spec_t *t = cmn_kafka_topics(&n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(t[i].partitions, 12, "%s has %d partitions", t[i].name, t[i].partitions);
}

Test(kafka_topics, only_preferences_is_compacted)
{
    size_t n = 0;
    const cmn_kafka_topic_spec_t *t = cmn_kafka_topics(&n);
    for (size_t i = 0; i < n; i++) {
        int want = strcmp(t[i].name, CMN_TOPIC_PREFERENCES) == 0;
        cr_assert_eq(t[i].compacted, want, "%s compacted=%d", t[i].name, t[i].compacted);
    }
}

Test(kafka_topics, name_macros_match_the_table)
{
    size_t n = 0;
    const cmn_kafka_topic_spec_t *t = cmn_kafka_topics(&n);
    const char *names[] = {CMN_TOPIC_REQUESTS, CMN_TOPIC_STATUS, CMN_TOPIC_INBOUND, CMN_TOPIC_PREFERENCES,
                           CMN_TOPIC_DLQ, CMN_TOPIC_SEND_PREFIX "sms", CMN_TOPIC_RETRY_PREFIX "email.5s",
                           CMN_TOPIC_DEFER_PREFIX "1h"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        cr_assert_not_null(find(t, n, names[i]), "%s not in the table", names[i]);
}

Test(kafka_topics, length_pointer_may_be_null)
{
    cr_assert_not_null(cmn_kafka_topics(NULL));
}

static int is_tier(const char *name)
{
    return strncmp(name, CMN_TOPIC_RETRY_PREFIX, strlen(CMN_TOPIC_RETRY_PREFIX)) == 0 ||
           strncmp(name, CMN_TOPIC_DEFER_PREFIX, strlen(CMN_TOPIC_DEFER_PREFIX)) == 0;
}

Test(kafka_topics, delay_tiers_use_log_append_time_and_nothing_else_does)
{
    size_t n = 0, tiers = 0;
    const cmn_kafka_topic_spec_t *t = cmn_kafka_topics(&n);
    for (size_t i = 0; i < n; i++) {
        const char *v = cmn_kafka_topic_config_want(&t[i], "message.timestamp.type");
        if (is_tier(t[i].name)) {
            tiers++;
            cr_assert_not_null(v, "%s", t[i].name);
            cr_assert_str_eq(v, "LogAppendTime", "%s", t[i].name);
        } else {
            cr_assert_null(v, "%s keeps CreateTime", t[i].name);
        }
    }
    cr_assert_eq(tiers, 15, "12 retry tiers (3 channels x 4) and 3 defer tiers");
}

Test(kafka_topics, preferences_is_compacted_and_the_dlq_kept_thirty_days)
{
    const cmn_kafka_topic_spec_t *prefs = cmn_kafka_topic_find(CMN_TOPIC_PREFERENCES);
    cr_assert_not_null(prefs);
    cr_assert_str_eq(cmn_kafka_topic_config_want(prefs, "cleanup.policy"), "compact");
    const cmn_kafka_topic_spec_t *dlq = cmn_kafka_topic_find(CMN_TOPIC_DLQ);
    cr_assert_not_null(dlq);
    cr_assert_str_eq(cmn_kafka_topic_config_want(dlq, "retention.ms"), "2592000000");
    cr_assert_eq(strtoll(CMN_KAFKA_DLQ_RETENTION_MS, NULL, 10), 30LL * 24 * 3600 * 1000);
    cr_assert_null(cmn_kafka_topic_config_want(dlq, "cleanup.policy"), "the DLQ ages out, it is not compacted");
    /* Every compacted topic says so in its configs too, and only those. */
    size_t n = 0;
    const cmn_kafka_topic_spec_t *t = cmn_kafka_topics(&n);
    for (size_t i = 0; i < n; i++) {
        const char *cp = cmn_kafka_topic_config_want(&t[i], "cleanup.policy");
        cr_assert_eq(cp != NULL && strcmp(cp, "compact") == 0, t[i].compacted, "%s", t[i].name);
    }
}

Test(kafka_topics, every_config_has_a_name_and_value)
{
    size_t n = 0;
    const cmn_kafka_topic_spec_t *t = cmn_kafka_topics(&n);
    for (size_t i = 0; i < n; i++) {
        for (size_t c = 0; c < CMN_KAFKA_TOPIC_MAX_CONFIGS && t[i].configs[c].name != NULL; c++) {
            cr_assert_not_null(t[i].configs[c].value, "%s %s", t[i].name, t[i].configs[c].name);
            cr_assert_neq(t[i].configs[c].value[0], '\0');
        }
    }
}

Test(kafka_topics, find_and_config_want_handle_unknowns)
{
    cr_assert_null(cmn_kafka_topic_find("crm.nope"));
    cr_assert_null(cmn_kafka_topic_find(NULL));
    cr_assert_null(cmn_kafka_topic_find("crm.dlq "));
    const cmn_kafka_topic_spec_t *req = cmn_kafka_topic_find(CMN_TOPIC_REQUESTS);
    cr_assert_not_null(req);
    cr_assert_str_eq(req->name, CMN_TOPIC_REQUESTS);
    cr_assert_null(cmn_kafka_topic_config_want(req, "retention.ms"));
    cr_assert_null(cmn_kafka_topic_config_want(NULL, "retention.ms"));
    cr_assert_null(cmn_kafka_topic_config_want(req, NULL));
}

Test(kafka_topics, state_names)
{
    cr_assert_str_eq(cmn_kafka_topic_state_name(CMN_KAFKA_TOPIC_OK), "ok");
    cr_assert_str_eq(cmn_kafka_topic_state_name(CMN_KAFKA_TOPIC_CREATED), "created");
    cr_assert_str_eq(cmn_kafka_topic_state_name(CMN_KAFKA_TOPIC_FIXED), "fixed");
    cr_assert_str_eq(cmn_kafka_topic_state_name(CMN_KAFKA_TOPIC_MISMATCH), "mismatch");
    cr_assert_str_eq(cmn_kafka_topic_state_name(CMN_KAFKA_TOPIC_UNCHECKED), "unchecked");
    cr_assert_str_eq(cmn_kafka_topic_state_name(CMN_KAFKA_TOPIC_FAILED), "failed");
}

static int is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

Test(kafka_traceparent, has_the_w3c_shape_and_is_random)
{
    char a[56], b[56];
    cr_assert_eq(cmn_kafka_traceparent_new(a), 0);
    cr_assert_eq(cmn_kafka_traceparent_new(b), 0);
    cr_assert_eq(strlen(a), 55);
    cr_assert_eq(strncmp(a, "00-", 3), 0);
    cr_assert(is_lower_hex(a + 3, 32));
    cr_assert_eq(a[35], '-');
    cr_assert(is_lower_hex(a + 36, 16));
    cr_assert_str_eq(a + 52, "-01");
    cr_assert_str_neq(a, b);
    cr_assert_eq(cmn_kafka_traceparent_new(NULL), CMN_ERR_INVALID);
}
