/* th_fleet.c - the `crmctl dev` fleet for the tests. See th_fleet.h. */
#include "th_fleet.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "th_proc.h"

#define CRMCTL_TIMEOUT_MS 240000

int th_fleet_init(th_fleet_t *f, const char *dir, int port_base, char *const env[])
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "%s", dir);
    f->port_base = port_base;
    for (size_t i = 0; env && env[i]; i++) {
        if (f->nenv >= TH_FLEET_ENV_MAX - 3) {
            th_fleet_free(f);
            return -1;
        }
        f->env[f->nenv] = strdup(env[i]);
        if (f->env[f->nenv++] == NULL) {
            th_fleet_free(f);
            return -1;
        }
    }
    return 0;
}

void th_fleet_free(th_fleet_t *f)
{
    for (int i = 0; i < f->nenv; i++)
        free(f->env[i]);
    f->nenv = 0;
}

int th_fleet_crmctl(const th_fleet_t *f, const char *sub, const char *arg, char *out, size_t outlen,
                    int timeout_ms)
{
    char bin[512], dirv[600], portv[64];
    char *env[TH_FLEET_ENV_MAX + 3];
    int n = 0;
    th_bin("crmctl", bin, sizeof(bin));
    snprintf(dirv, sizeof(dirv), "CRM_DEV_DIR=%s", f->dir);
    snprintf(portv, sizeof(portv), "CRM_DEV_PORT_BASE=%d", f->port_base);
    env[n++] = dirv;
    env[n++] = portv;
    for (int i = 0; i < f->nenv; i++)
        env[n++] = f->env[i];
    env[n] = NULL;
    char *argv[] = {bin, "dev", (char *)sub, (char *)arg, NULL};
    return th_run(argv, env, out, outlen, timeout_ms > 0 ? timeout_ms : CRMCTL_TIMEOUT_MS);
}

int th_fleet_env_value(const char *path, const char *name, char *out, size_t outlen)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    char line[2048];
    size_t nlen = strlen(name);
    int rc = -1;
    while (fgets(line, sizeof(line), fp)) {
        if (strncmp(line, name, nlen) != 0 || line[nlen] != '=')
            continue;
        char *v = line + nlen + 1;
        v[strcspn(v, "\n")] = '\0';
        size_t vl = strlen(v);
        if (vl >= 2 && v[0] == '\'' && v[vl - 1] == '\'') {
            v[vl - 1] = '\0';
            v++;
        }
        snprintf(out, outlen, "%s", v);
        rc = 0;
        break;
    }
    fclose(fp);
    return rc;
}

int th_fleet_load(th_fleet_t *f)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/env", f->dir);
    if (th_fleet_env_value(path, "CRM_INGEST_URL", f->ingest_url, sizeof(f->ingest_url)) != 0 ||
        th_fleet_env_value(path, "KAFKA_BROKERS", f->brokers, sizeof(f->brokers)) != 0 ||
        th_fleet_env_value(path, "DATABASE_URL", f->database_url, sizeof(f->database_url)) != 0 ||
        th_fleet_env_value(path, "CRM_TWILIO_SANDBOX_URL", f->twilio_url, sizeof(f->twilio_url)) != 0 ||
        th_fleet_env_value(path, "CRM_META_SANDBOX_URL", f->meta_url, sizeof(f->meta_url)) != 0 ||
        th_fleet_env_value(path, "CRM_SMTP_ACCEPTED_LOG", f->smtp_accepted_log, sizeof(f->smtp_accepted_log)) != 0)
        return -1;
    if (th_fleet_env_value(path, "CRM_DEV_KAFKA_CONTROL", f->kafka_control, sizeof(f->kafka_control)) != 0)
        f->kafka_control[0] = '\0';
    return 0;
}

int th_fleet_up(th_fleet_t *f)
{
    static char out[32768];
    th_fleet_crmctl(f, "down", NULL, out, sizeof(out), 0);
    int rc = th_fleet_crmctl(f, "up", NULL, out, sizeof(out), 0);
    fprintf(stderr, "%s", out);
    if (rc != 0 || th_fleet_load(f) != 0) {
        fprintf(stderr, "th_fleet_up: crmctl dev up failed (%d)\n", rc);
        th_fleet_crmctl(f, "down", NULL, out, sizeof(out), 0);
        return -1;
    }
    return 0;
}

void th_fleet_down(th_fleet_t *f)
{
    static char out[16384];
    th_fleet_crmctl(f, "down", NULL, out, sizeof(out), 0);
}

static int wanted_topic(const char *topic, const char *const *prefixes)
{
    for (size_t i = 0; prefixes && prefixes[i]; i++) {
        if (strncmp(topic, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    }
    return 0;
}

int th_fleet_group_lag(const char *brokers, const char *group, const char *const *topic_prefixes, int64_t *lag)
{
    char errstr[512];
    int rc = -1;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    *lag = 0;
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "th_fleet_group_lag: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    /* Never subscribes: it only reads the group's committed offsets, so it
     * does not join the group or move its partitions. */
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "th_fleet_group_lag: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        goto cleanup;
    parts = rd_kafka_topic_partition_list_new(64);
    for (int t = 0; t < md->topic_cnt; t++) {
        if (!wanted_topic(md->topics[t].topic, topic_prefixes))
            continue;
        for (int p = 0; p < md->topics[t].partition_cnt; p++)
            rd_kafka_topic_partition_list_add(parts, md->topics[t].topic, md->topics[t].partitions[p].id);
    }
    if (parts->cnt > 0 && rd_kafka_committed(rk, parts, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        goto cleanup;
    for (int i = 0; i < parts->cnt; i++) {
        int64_t low = 0, high = 0;
        if (rd_kafka_query_watermark_offsets(rk, parts->elems[i].topic, parts->elems[i].partition, &low, &high,
                                             5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
            goto cleanup;
        int64_t from = parts->elems[i].offset >= 0 ? parts->elems[i].offset : low;
        if (high > from)
            *lag += high - from;
    }
    rc = 0;
cleanup:
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return rc;
}
