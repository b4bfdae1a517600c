/* bench_produce.c - `bench-produce`: puts records on a delay tier for `make bench`.
 *
 *   bench-produce BROKERS TOPIC TARGET < records
 *
 * Each stdin line is "<due_at epoch ms>\t<key>\t<value>" (the value is the
 * rest of the line, a JSON document without newlines). Every record goes to
 * TOPIC with the headers x-crm-due-at and x-crm-target = TARGET, the way the
 * router's own deferrals are written (docs/reliability.md), so the bench
 * measures the tier consumer and not a shortcut. Python has no Kafka client
 * in its standard library, hence this helper.
 *
 * Prints the number of acknowledged records on stdout. Exit status: 0 all
 * acknowledged, 1 Kafka or input problem, 2 usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/kafka.h"
#include "crm/log.h"

/* Long enough for a CommunicationRequest with a few context fields. */
#define BENCH_LINE_MAX 65536
/* How long to wait for the cluster to acknowledge everything. */
#define BENCH_ACK_TIMEOUT_MS 60000

/* Splits one input line into its three fields in place. */
static int bench_split(char *line, char **due, char **key, char **value)
{
    char *t1 = strchr(line, '\t');
    char *t2 = t1 != NULL ? strchr(t1 + 1, '\t') : NULL;
    if (t2 == NULL)
        return CMN_ERR_PARSE;
    *t1 = '\0';
    *t2 = '\0';
    *due = line;
    *key = t1 + 1;
    *value = t2 + 1;
    size_t n = strlen(*value);
    while (n > 0 && ((*value)[n - 1] == '\n' || (*value)[n - 1] == '\r'))
        (*value)[--n] = '\0';
    return 0;
}

int main(int argc, char **argv)
{
    cmn_log_t log;
    cmn_kafka_producer_t *prod = NULL;
    cmn_kafka_batch_t batch;
    int batch_init = 0;
    char err[512] = "";
    char *line = NULL;
    long n = 0;
    int rc = 0;

    if (argc != 4) {
        fprintf(stderr, "usage: bench-produce BROKERS TOPIC TARGET < lines of \"due_ms<TAB>key<TAB>value\"\n");
        return 2;
    }
    cmn_log_init(&log, "bench-produce", "warn");
    cmn_kafka_config_t kc = {.brokers = argv[1], .client_id = "crm-bench-produce", .log = &log};
    prod = cmn_kafka_producer_new(&kc, err, sizeof err);
    if (prod == NULL) {
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    rc = cmn_kafka_batch_init(&batch);
    if (rc != 0) {
        snprintf(err, sizeof err, "out of memory");
        goto cleanup;
    }
    batch_init = 1;
    line = malloc(BENCH_LINE_MAX);
    if (line == NULL) {
        rc = CMN_ERR_NOMEM;
        snprintf(err, sizeof err, "out of memory");
        goto cleanup;
    }
    while (rc == 0 && fgets(line, BENCH_LINE_MAX, stdin) != NULL) {
        char *due, *key, *value;
        if (bench_split(line, &due, &key, &value) != 0) {
            rc = CMN_ERR_PARSE;
            snprintf(err, sizeof err, "line %ld: expected due_ms<TAB>key<TAB>value", n + 1);
            break;
        }
        cmn_kafka_header_t h[2] = {
            {.name = CMN_HDR_DUE_AT, .value = due, .value_len = strlen(due)},
            {.name = CMN_HDR_TARGET, .value = argv[3], .value_len = strlen(argv[3])},
        };
        rc = cmn_kafka_produce_in_batch(prod, &batch, argv[2], key, strlen(key), value, strlen(value), h, 2);
        if (rc != 0)
            snprintf(err, sizeof err, "producing record %ld to %s failed", n + 1, argv[2]);
        else
            n++;
    }
    if (rc == 0)
        rc = cmn_kafka_batch_wait(&batch, BENCH_ACK_TIMEOUT_MS, err, sizeof err);
cleanup:
    if (batch_init)
        cmn_kafka_batch_destroy(&batch);
    if (prod != NULL)
        cmn_kafka_producer_destroy(prod);
    free(line);
    if (rc != 0) {
        fprintf(stderr, "bench-produce: %s\n", err[0] != '\0' ? err : "failed");
        return 1;
    }
    printf("%ld\n", n);
    return 0;
}
