/* Unit tests for the topic table and the traceparent generator of crm/kafka.h. */
#include <criterion/criterion.h>
#include <ctype.h>
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
