/* main.c - crm-webhook-receiver: provider webhooks (Twilio, Meta) and email
 * tracking links in, StatusEvents, InboundMessages and preference changes
 * out. Configuration, signals, run, shutdown; the service lives in
 * wh_server.c and the wh_* modules. */
#include <stdio.h>
#include <string.h>

#include "crm/config.h"
#include "crm/signal.h"
#include "wh_server.h"

#define SERVICE "crm-webhook-receiver"

int main(int argc, char **argv)
{
    wh_config_t cfg;
    wh_ctx_t *ctx = NULL;
    size_t n = 0;
    char err[512];
    int exit_code = 1;
    const cmn_cfg_entry_t *table = wh_config_table(&n);

    memset(&cfg, 0, sizeof cfg);
    int rc = cmn_config_main(SERVICE, argc, argv, table, n, &cfg);
    if (rc == 1) {
        exit_code = 0;
        goto out;
    }
    if (rc < 0) {
        exit_code = 2;
        goto out;
    }
    if (wh_config_check(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s: config error: %s\n", SERVICE, err);
        exit_code = 2;
        goto out;
    }
    if (cmn_signal_install() != 0) {
        fprintf(stderr, "%s: cannot install signal handlers\n", SERVICE);
        goto out;
    }
    ctx = wh_ctx_new(&cfg, err, sizeof err);
    if (ctx == NULL) {
        fprintf(stderr, "%s: cannot start: %s\n", SERVICE, err);
        goto out;
    }
    if (wh_run(ctx) == 0)
        exit_code = 0;

out:
    wh_ctx_destroy(ctx);
    cmn_config_free(table, n, &cfg);
    return exit_code;
}
