/* main.c - crm-ingest: the HTTP API that accepts CommunicationRequests and
 * stores them on crm.requests. Configuration, signals, run, shutdown; the
 * service itself lives in ingest_server.c and ingest_api.c. */
#include <stdio.h>
#include <string.h>

#include "crm/config.h"
#include "crm/signal.h"
#include "ingest_server.h"

#define SERVICE "crm-ingest"

int main(int argc, char **argv)
{
    ingest_config_t cfg;
    ingest_ctx_t *ctx = NULL;
    size_t n = 0;
    char err[512];
    int exit_code = 1;
    const cmn_cfg_entry_t *table = ingest_config_table(&n);

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
    if (ingest_config_check(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s: config error: %s\n", SERVICE, err);
        exit_code = 2;
        goto out;
    }
    if (cmn_signal_install() != 0) {
        fprintf(stderr, "%s: cannot install signal handlers\n", SERVICE);
        goto out;
    }
    ctx = ingest_ctx_new(&cfg, err, sizeof err);
    if (ctx == NULL) {
        fprintf(stderr, "%s: cannot start: %s\n", SERVICE, err);
        goto out;
    }
    if (ingest_run(ctx) == 0)
        exit_code = 0;

out:
    /* Stops HTTP intake, then flushes the producer. */
    ingest_ctx_destroy(ctx);
    cmn_config_free(table, n, &cfg);
    return exit_code;
}
