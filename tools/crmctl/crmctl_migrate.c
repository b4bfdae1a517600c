/* crmctl_migrate.c - `crmctl migrate [--dir DIR]`: applies the numbered SQL
 * migrations to DATABASE_URL (see cmn_pg_migrate for the rules: one
 * transaction per file, an advisory lock so concurrent runners - several
 * replicas, a Kubernetes Job - apply each file once).
 *
 * The directory is --dir, else $CRM_MIGRATIONS_DIR, else the migrations/
 * folder of the checkout crmctl was built from. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/log.h"
#include "crm/pg.h"
#include "crmctl.h"

#ifndef CRM_DEFAULT_MIGRATIONS_DIR
#ifdef CRM_DEFAULT_SOURCE_DIR
#define CRM_DEFAULT_MIGRATIONS_DIR CRM_DEFAULT_SOURCE_DIR "/migrations"
#else
#define CRM_DEFAULT_MIGRATIONS_DIR "migrations"
#endif
#endif

/* PostgreSQL may still be starting (a migration Job next to a fresh
 * database), so the connection is retried this long. */
#define CRMCTL_MIGRATE_CONNECT_TIMEOUT_MS 30000

static void crmctl_migrate_usage(FILE *out)
{
    fprintf(out, "usage: crmctl migrate [--dir DIR]\n"
                 "  Applies DIR/NNNN_name.sql files not yet recorded in schema_migrations to DATABASE_URL.\n"
                 "  DIR defaults to $CRM_MIGRATIONS_DIR, else %s\n",
            CRM_DEFAULT_MIGRATIONS_DIR);
}

int crmctl_migrate_main(int argc, char **argv)
{
    const char *dir = NULL;
    PGconn *conn = NULL;
    cmn_log_t log;
    char err[1024] = "";
    int applied = 0;
    int exit_code = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            crmctl_migrate_usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
            continue;
        }
        fprintf(stderr, "crmctl migrate: unexpected argument '%s'\n", argv[i]);
        crmctl_migrate_usage(stderr);
        return 2;
    }
    if (dir == NULL) {
        const char *env = getenv("CRM_MIGRATIONS_DIR");
        dir = env != NULL && env[0] != '\0' ? env : CRM_DEFAULT_MIGRATIONS_DIR;
    }
    const char *url = getenv("DATABASE_URL");
    if (url == NULL || url[0] == '\0') {
        fprintf(stderr, "crmctl migrate: DATABASE_URL is not set (postgresql://user:password@host:port/db)\n");
        return 1;
    }
    /* JSON lines on stderr like every service, so a migration Job's log
     * reads the same as the fleet's; the summary goes to stdout. */
    cmn_log_init(&log, "crmctl", getenv("LOG_LEVEL") != NULL ? getenv("LOG_LEVEL") : "info");

    /* The URL may carry a password: it is never printed, only the error. */
    conn = cmn_pg_connect(url, CRMCTL_MIGRATE_CONNECT_TIMEOUT_MS, err, sizeof err);
    if (conn == NULL) {
        fprintf(stderr, "crmctl migrate: %s\n", err);
        goto out;
    }
    if (cmn_pg_migrate(conn, dir, &log, &applied, err, sizeof err) != 0) {
        fprintf(stderr, "crmctl migrate: %s (%d applied before the failure)\n", err, applied);
        goto out;
    }
    printf("applied %d migration%s from %s\n", applied, applied == 1 ? "" : "s", dir);
    exit_code = 0;
out:
    PQfinish(conn);
    return exit_code;
}
