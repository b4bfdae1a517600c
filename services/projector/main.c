/* crm-projector - keeps the PostgreSQL projections of the communication
 * engine from crm.status and crm.preferences. main() only wires
 * configuration, logging, signals and the service's life cycle; everything
 * else is in projector.c. */
#include <stdio.h>

#include "crm/config.h"
#include "crm/log.h"
#include "crm/signal.h"
#include "projector.h"

int main(int argc, char **argv)
{
    projector_config_t cfg = {0};
    size_t ntable = 0;
    const cmn_cfg_entry_t *table = projector_config_table(&ntable);
    cmn_log_t log;
    char err[1024] = "";
    int exit_code = 1;
    projector_t *p = NULL;

    int rc = cmn_config_main("crm-projector", argc, argv, table, ntable, &cfg);
    if (rc != 0) {
        /* 1: --help or --print-config was answered; negative: bad settings
         * (already reported one line per variable). */
        exit_code = rc == 1 ? 0 : 2;
        goto out;
    }
    if (projector_config_check(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "crm-projector: config error: %s\n", err);
        exit_code = 2;
        goto out;
    }
    if (cmn_log_init(&log, "projector", cfg.log_level) != 0) {
        fprintf(stderr, "crm-projector: config error: LOG_LEVEL: must be debug, info, warn or error\n");
        exit_code = 2;
        goto out;
    }
    if (cmn_signal_install() != 0) {
        cmn_log_error(&log, NULL, "cannot install signal handlers");
        goto out;
    }
    p = projector_new(&cfg, &log, err, sizeof err);
    if (p == NULL) {
        cmn_logkv(&log, CMN_LOG_ERROR, NULL, (const char *[]){"error", err, NULL}, "cannot start");
        goto out;
    }
    exit_code = projector_run(p) == 0 ? 0 : 1;
out:
    projector_destroy(p);
    cmn_config_free(table, ntable, &cfg);
    return exit_code;
}
