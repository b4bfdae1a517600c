/* config.h - configuration from the environment through one table.
 *
 * Each service declares a static table of cmn_cfg_entry_t describing its
 * settings and a plain struct that receives the values (located by offsetof).
 * cmn_config_load() reads every entry, collects every problem (missing
 * required value, unparsable number, out of range) and reports each as one
 * line naming the variable, so a bad deployment shows all its mistakes at once.
 *
 *   static const cmn_cfg_entry_t table[] = {
 *       {"KAFKA_BROKERS", CMN_CFG_STRING, "localhost:9092", 0, offsetof(struct cfg, brokers),
 *        "Kafka bootstrap servers", 0, 0},
 *       {"SMTP_PASSWORD", CMN_CFG_STRING, "", 1, offsetof(struct cfg, smtp_password), "...", 0, 0},
 *   };
 */
#ifndef CRM_CONFIG_H
#define CRM_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef enum cmn_cfg_type {
    CMN_CFG_STRING, /* field type: char * (owned by the struct; freed by cmn_config_free) */
    CMN_CFG_INT,    /* field type: long; bounded by [min, max] when min < max */
    CMN_CFG_BOOL,   /* field type: int; accepts true/false/1/0/yes/no/on/off */
    CMN_CFG_DOUBLE  /* field type: double; bounded by [min, max] when min < max */
} cmn_cfg_type_t;

typedef struct cmn_cfg_entry {
    const char *name;          /* environment variable */
    cmn_cfg_type_t type;
    const char *default_value; /* NULL means required */
    int secret;                /* 1: never printed or logged */
    size_t offset;             /* offsetof(service config struct, field) */
    const char *help;          /* one sentence, shown by --print-config and the docs */
    double min, max;           /* range for INT/DOUBLE when min < max */
} cmn_cfg_entry_t;

/* Loads every entry of table into cfg. On failure returns CMN_ERR_CONFIG and
 * writes one line per problem into errstr ("KAFKA_BROKERS: required but not set\n").
 * Values of secret entries never appear in errstr. cfg must be zeroed first. */
int cmn_config_load(const cmn_cfg_entry_t *table, size_t n, void *cfg, char *errstr, size_t errlen);

/* Writes NAME=value lines (secrets as <redacted> when set, <unset> when empty). */
void cmn_config_print(const cmn_cfg_entry_t *table, size_t n, const void *cfg, FILE *out);

/* Frees the strings cmn_config_load allocated in cfg. */
void cmn_config_free(const cmn_cfg_entry_t *table, size_t n, void *cfg);

/* The common entry point for main(): handles --print-config and --help,
 * loads the table, and on error prints "service: config error: ..." lines to
 * stderr. Returns 0 to continue, 1 when the program should exit 0 (it printed
 * what was asked), or a negative cmn_err_t when it should exit 2. */
int cmn_config_main(const char *service, int argc, char **argv, const cmn_cfg_entry_t *table,
                    size_t n, void *cfg);

#endif
