/* test_metrics.c - exact text exposition output and lock-free updates. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "crm/metrics.h"

/* Renders m into a fresh string the test frees. */
static char *render(cmn_metrics_t *m)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_metrics_render(m, &b), 0);
    return cmn_buf_steal(&b);
}

Test(metrics, empty_registry_renders_nothing)
{
    cmn_metrics_t *m = cmn_metrics_new();
    char *text = render(m);
    cr_assert_str_eq(text, "");
    free(text);
    cmn_metrics_destroy(m);
}

Test(metrics, counters_grouped_under_one_help_and_type)
{
    cmn_metrics_t *m = cmn_metrics_new();
    cmn_counter_t *jobs = cmn_metrics_counter(m, "jobs_total", "Jobs done.", NULL);
    cmn_counter_t *email = cmn_metrics_counter(m, "sent_total", "Messages sent.", "channel=\"email\"");
    cmn_counter_t *sms = cmn_metrics_counter(m, "sent_total", "Messages sent.", "channel=\"sms\",status=\"ok\"");
    cr_assert_not_null(jobs);
    cr_assert_not_null(email);
    cr_assert_not_null(sms);

    cmn_counter_add(jobs, 3);
    cmn_counter_add(email, 1);
    cmn_counter_add(email, 41);
    /* Re-registering the same name and labels hands back the same series. */
    cr_assert_eq(cmn_metrics_counter(m, "sent_total", "Messages sent.", "channel=\"email\""), email);
    cmn_counter_add(cmn_metrics_counter(m, "sent_total", NULL, "channel=\"sms\",status=\"ok\""), 7);

    char *text = render(m);
    cr_assert_str_eq(text, "# HELP jobs_total Jobs done.\n"
                           "# TYPE jobs_total counter\n"
                           "jobs_total 3\n"
                           "# HELP sent_total Messages sent.\n"
                           "# TYPE sent_total counter\n"
                           "sent_total{channel=\"email\"} 42\n"
                           "sent_total{channel=\"sms\",status=\"ok\"} 7\n");
    free(text);
    cmn_metrics_destroy(m);
}

Test(metrics, gauges_set_add_and_special_values)
{
    cmn_metrics_t *m = cmn_metrics_new();
    cmn_gauge_t *g = cmn_metrics_gauge(m, "queue_depth", "Items waiting.", NULL);
    cmn_gauge_t *frac = cmn_metrics_gauge(m, "ratio", "A ratio.", "kind=\"a\"");
    cmn_gauge_t *inf = cmn_metrics_gauge(m, "ratio", "A ratio.", "kind=\"inf\"");
    cmn_gauge_t *ninf = cmn_metrics_gauge(m, "ratio", "A ratio.", "kind=\"ninf\"");
    cmn_gauge_t *nan_g = cmn_metrics_gauge(m, "ratio", "A ratio.", "kind=\"nan\"");

    cmn_gauge_set(g, 10);
    cmn_gauge_add(g, -3);
    cmn_gauge_set(frac, 1.5);
    cmn_gauge_add(frac, -0.25);
    cmn_gauge_add(frac, 0.1);
    cmn_gauge_set(inf, INFINITY);
    cmn_gauge_set(ninf, -INFINITY);
    cmn_gauge_set(nan_g, NAN);

    char *text = render(m);
    cr_assert_str_eq(text, "# HELP queue_depth Items waiting.\n"
                           "# TYPE queue_depth gauge\n"
                           "queue_depth 7\n"
                           "# HELP ratio A ratio.\n"
                           "# TYPE ratio gauge\n"
                           "ratio{kind=\"a\"} 1.35\n"
                           "ratio{kind=\"inf\"} +Inf\n"
                           "ratio{kind=\"ninf\"} -Inf\n"
                           "ratio{kind=\"nan\"} NaN\n");
    free(text);
    cmn_metrics_destroy(m);
}

Test(metrics, histogram_buckets_are_cumulative)
{
    static const double bounds[] = {0.25, 1, 10};
    cmn_metrics_t *m = cmn_metrics_new();
    cmn_histogram_t *h = cmn_metrics_histogram(m, "send_seconds", "Send latency.", "channel=\"email\"",
                                               bounds, 3);
    cmn_histogram_t *plain = cmn_metrics_histogram(m, "plain_seconds", "No labels.", NULL, bounds, 1);
    cr_assert_not_null(h);
    cr_assert_not_null(plain);

    cmn_histogram_observe(h, 0.125);
    cmn_histogram_observe(h, 0.25); /* upper bounds are inclusive */
    cmn_histogram_observe(h, 0.5);
    cmn_histogram_observe(h, 20);
    cmn_histogram_observe(plain, 2);

    char *text = render(m);
    cr_assert_str_eq(text, "# HELP send_seconds Send latency.\n"
                           "# TYPE send_seconds histogram\n"
                           "send_seconds_bucket{channel=\"email\",le=\"0.25\"} 2\n"
                           "send_seconds_bucket{channel=\"email\",le=\"1\"} 3\n"
                           "send_seconds_bucket{channel=\"email\",le=\"10\"} 3\n"
                           "send_seconds_bucket{channel=\"email\",le=\"+Inf\"} 4\n"
                           "send_seconds_sum{channel=\"email\"} 20.875\n"
                           "send_seconds_count{channel=\"email\"} 4\n"
                           "# HELP plain_seconds No labels.\n"
                           "# TYPE plain_seconds histogram\n"
                           "plain_seconds_bucket{le=\"0.25\"} 0\n"
                           "plain_seconds_bucket{le=\"+Inf\"} 1\n"
                           "plain_seconds_sum 2\n"
                           "plain_seconds_count 1\n");
    free(text);
    cmn_metrics_destroy(m);
}

Test(metrics, latency_buckets)
{
    static const double want[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    cr_assert_eq(CMN_METRICS_LATENCY_BUCKETS_N, 14);
    for (size_t i = 0; i < 14; i++)
        cr_assert_eq(CMN_METRICS_LATENCY_BUCKETS[i], want[i]);

    cmn_metrics_t *m = cmn_metrics_new();
    cmn_histogram_t *h = cmn_metrics_histogram(m, "lat_seconds", "L.", NULL, CMN_METRICS_LATENCY_BUCKETS,
                                               CMN_METRICS_LATENCY_BUCKETS_N);
    cmn_histogram_observe(h, 0.003);
    char *text = render(m);
    cr_assert_not_null(strstr(text, "lat_seconds_bucket{le=\"0.001\"} 0\n"
                                    "lat_seconds_bucket{le=\"0.005\"} 1\n"));
    cr_assert_not_null(strstr(text, "lat_seconds_bucket{le=\"2.5\"} 1\n"));
    cr_assert_not_null(strstr(text, "lat_seconds_bucket{le=\"60\"} 1\n"
                                    "lat_seconds_bucket{le=\"+Inf\"} 1\n"
                                    "lat_seconds_sum 0.003\n"
                                    "lat_seconds_count 1\n"));
    free(text);
    cmn_metrics_destroy(m);
}

Test(metrics, label_values_and_help_are_escaped)
{
    cmn_metrics_t *m = cmn_metrics_new();
    /* Escapes in the caller's list are understood; a raw newline is escaped. */
    cmn_counter_t *c = cmn_metrics_counter(m, "errors_total", "Errors with \\ and\nnewline.",
                                           "reason=\"say \\\"hi\\\" \\\\ x\nline\"");
    cr_assert_not_null(c);
    cmn_counter_add(c, 1);

    cmn_buf_t esc = CMN_BUF_INIT;
    cr_assert_eq(cmn_metrics_escape_label_value(&esc, "a\"b\\c\nd"), 0);
    cr_assert_str_eq(esc.data, "a\\\"b\\\\c\\nd");
    cmn_buf_free(&esc);

    char *text = render(m);
    cr_assert_str_eq(text, "# HELP errors_total Errors with \\\\ and\\nnewline.\n"
                           "# TYPE errors_total counter\n"
                           "errors_total{reason=\"say \\\"hi\\\" \\\\ x\\nline\"} 1\n");
    free(text);
    cmn_metrics_destroy(m);
}

Test(metrics, bad_registrations_return_null_and_updates_on_null_are_safe)
{
    static const double unordered[] = {1, 0.5};
    static const double bounds[] = {1, 2};
    cmn_metrics_t *m = cmn_metrics_new();

    cr_assert_null(cmn_metrics_counter(m, "9starts_with_digit", "x", NULL));
    cr_assert_null(cmn_metrics_counter(m, "has-dash", "x", NULL));
    cr_assert_null(cmn_metrics_counter(m, "", "x", NULL));
    cr_assert_null(cmn_metrics_counter(m, NULL, "x", NULL));
    cr_assert_null(cmn_metrics_counter(m, "ok_total", "x", "unterminated=\"abc"));
    cr_assert_null(cmn_metrics_counter(m, "ok_total", "x", "no_quotes=abc"));
    cr_assert_null(cmn_metrics_counter(m, "ok_total", "x", "a=\"1\" b=\"2\""));
    cr_assert_null(cmn_metrics_counter(m, "ok_total", "x", "a=\"bad \\t escape\""));
    cr_assert_null(cmn_metrics_histogram(m, "h_seconds", "x", "le=\"1\"", bounds, 2));
    cr_assert_null(cmn_metrics_histogram(m, "h_seconds", "x", NULL, unordered, 2));
    cr_assert_null(cmn_metrics_counter(NULL, "ok_total", "x", NULL));

    /* One name cannot be two types, and a histogram keeps its bounds. */
    cr_assert_not_null(cmn_metrics_counter(m, "thing", "x", NULL));
    cr_assert_null(cmn_metrics_gauge(m, "thing", "x", NULL));
    cr_assert_not_null(cmn_metrics_histogram(m, "h2_seconds", "x", NULL, bounds, 2));
    cr_assert_null(cmn_metrics_histogram(m, "h2_seconds", "x", NULL, bounds, 1));

    /* Trailing comma and spaces are tolerated and normalised away. */
    cmn_counter_t *a = cmn_metrics_counter(m, "norm_total", "x", "a=\"1\", b=\"2\",");
    cr_assert_not_null(a);
    cr_assert_eq(cmn_metrics_counter(m, "norm_total", "x", "a=\"1\",b=\"2\""), a);

    cmn_counter_add(NULL, 1);
    cmn_gauge_set(NULL, 1);
    cmn_gauge_add(NULL, 1);
    cmn_histogram_observe(NULL, 1);
    cmn_metrics_destroy(m);
}

typedef struct worker_arg {
    cmn_counter_t *c;
    cmn_gauge_t *g;
    cmn_histogram_t *h;
    cmn_metrics_t *m;
} worker_arg_t;

#define PER_THREAD 100000

static void *worker(void *p)
{
    worker_arg_t *a = p;
    for (int i = 0; i < PER_THREAD; i++) {
        cmn_counter_add(a->c, 1);
        cmn_gauge_add(a->g, 1.0);
        cmn_histogram_observe(a->h, (i % 2) ? 0.5 : 5.0);
        /* Registration and rendering run alongside the lock-free updates. */
        if (i % 10000 == 0) {
            cmn_buf_t b = CMN_BUF_INIT;
            cmn_metrics_counter(a->m, "other_total", "x", NULL);
            cmn_metrics_render(a->m, &b);
            cmn_buf_free(&b);
        }
    }
    return NULL;
}

Test(metrics, four_threads_lose_no_updates)
{
    static const double bounds[] = {1};
    cmn_metrics_t *m = cmn_metrics_new();
    worker_arg_t arg = {
        .c = cmn_metrics_counter(m, "ops_total", "Ops.", NULL),
        .g = cmn_metrics_gauge(m, "level", "Level.", NULL),
        .h = cmn_metrics_histogram(m, "op_seconds", "Op time.", NULL, bounds, 1),
        .m = m,
    };
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, worker, &arg), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);

    char *text = render(m);
    cr_assert_not_null(strstr(text, "\nops_total 400000\n"), "%s", text);
    cr_assert_not_null(strstr(text, "\nlevel 400000\n"), "%s", text);
    cr_assert_not_null(strstr(text, "op_seconds_bucket{le=\"1\"} 200000\n"
                                    "op_seconds_bucket{le=\"+Inf\"} 400000\n"
                                    "op_seconds_sum 1100000\n"
                                    "op_seconds_count 400000\n"),
                       "%s", text);
    free(text);
    cmn_metrics_destroy(m);
}
