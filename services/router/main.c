/* crm-router - routes CommunicationRequests to channels (router_service.h).
 * main() only loads the settings, sets up logging and signals, and runs the
 * service. Exit codes: 0 clean stop, 1 start-up failure, 2 bad configuration. */
#include <stdio.h>

#include "crm/config.h"
#include "crm/log.h"
#include "crm/signal.h"
#include "router_service.h"

int main(int argc, char **argv)
{
    router_settings_t settings = {0};
    cmn_log_t log;
    router_ctx_t *ctx = NULL;
    char err[1024];
    int exit_code = 0;
    size_t n = 0;
    const cmn_cfg_entry_t *table = router_settings_table(&n);

    int rc = cmn_config_main("crm-router", argc, argv, table, n, &settings);
    if (rc == 1) {
        goto cleanup;
    }
    if (rc < 0) {
        exit_code = 2;
        goto cleanup;
    }
    if (cmn_log_init(&log, "router", settings.log_level) != 0) {
        fprintf(stderr, "crm-router: config error: LOG_LEVEL: expected debug, info, warn or error\n");
        exit_code = 2;
        goto cleanup;
    }
    if (cmn_signal_install() != 0) {
        fprintf(stderr, "crm-router: cannot install signal handlers\n");
        exit_code = 1;
        goto cleanup;
    }
    ctx = router_service_new(&settings, &log, &exit_code, err, sizeof err);
    if (ctx == NULL) {
        fprintf(stderr, "crm-router: %s%s\n", exit_code == 2 ? "config error: " : "", err);
        goto cleanup;
    }
    exit_code = router_service_run(ctx) == 0 ? 0 : 1;

cleanup:
    router_service_destroy(ctx);
    cmn_config_free(table, n, &settings);
    return exit_code;
}
