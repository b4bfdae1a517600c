/* th_fleet.h - the whole fleet as `crmctl dev up` starts it, for the tests
 * that need every service at once (the chaos suite): start and stop it
 * under a directory of the build tree, read its endpoints, kill and restart
 * its processes, and measure a consumer group's uncommitted messages.
 *
 * Every crmctl call gets the same environment (the fleet's directory, its
 * port base, and the caller's overrides), because `crmctl dev restart`
 * starts a process again with the caller's environment plus what `dev up`
 * recorded for it. */
#ifndef TH_FLEET_H
#define TH_FLEET_H

#include <stddef.h>
#include <stdint.h>

#define TH_FLEET_ENV_MAX 32

typedef struct th_fleet {
    char dir[512];
    int port_base;
    char *env[TH_FLEET_ENV_MAX + 1]; /* owned "NAME=value" overrides for every crmctl call */
    int nenv;
    /* From <dir>/env once up. */
    char ingest_url[256];
    char brokers[1024];
    char database_url[512];
    char twilio_url[256];
    char meta_url[256];
    char smtp_accepted_log[700];
    char kafka_control[128]; /* "" when the embedded Kafka has no control channel */
} th_fleet_t;

/* Sets up f for directory dir and port_base; env is NULL or a
 * NULL-terminated list of "NAME=value" overrides (copied). 0 or -1. */
int th_fleet_init(th_fleet_t *f, const char *dir, int port_base, char *const env[]);
void th_fleet_free(th_fleet_t *f);

/* Runs `crmctl dev <sub> [arg]` with the fleet's environment, output into
 * out. Returns crmctl's exit code, or -1. */
int th_fleet_crmctl(const th_fleet_t *f, const char *sub, const char *arg, char *out, size_t outlen,
                    int timeout_ms);

/* `dev down` then `dev up`, then reads the endpoints. 0, or -1 with
 * crmctl's output on stderr. */
int th_fleet_up(th_fleet_t *f);
/* Reads the endpoints from <dir>/env. 0 or -1. */
int th_fleet_load(th_fleet_t *f);
void th_fleet_down(th_fleet_t *f);

/* The value of NAME in a shell-syntax env file (quotes removed). 0 or -1. */
int th_fleet_env_value(const char *path, const char *name, char *out, size_t outlen);

/* How many messages consumer group `group` has not committed, over the
 * partitions of every topic whose name starts with one of topic_prefixes
 * (NULL-terminated): high watermark minus committed offset, or minus the
 * low watermark where the group never committed (all of it could be read
 * again). Into *lag. 0 or -1. */
int th_fleet_group_lag(const char *brokers, const char *group, const char *const *topic_prefixes, int64_t *lag);

#endif
