/* test_crmctl_conversations.c - `crmctl conversations set` argument and
 * environment checks through crmctl_conversations_main(): exit codes, and
 * that the phone number is never echoed (it is personal data). The write to
 * PostgreSQL itself is exercised by tests/integration/test_whatsapp_worker.c,
 * where the worker then finds the row. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crmctl.h"

#define KEY "0123456789abcdef0123456789abcdef-test"

static char *slurp(FILE *f)
{
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    cr_assert_geq(size, 0);
    rewind(f);
    char *text = calloc(1, (size_t)size + 1);
    cr_assert_not_null(text);
    cr_assert_eq(fread(text, 1, (size_t)size, f), (size_t)size);
    return text;
}

typedef struct run_result {
    int status;
    char *out; /* owned: stdout and stderr together */
} run_result_t;

/* Runs crmctl_conversations_main with args (NULL-terminated) while fds 1
 * and 2 point at a temporary file, then restores them. */
static run_result_t run(const char *const *args)
{
    char *argv[32];
    int argc = 0;
    while (args[argc] != NULL) {
        cr_assert_lt(argc, 31);
        argv[argc] = (char *)args[argc];
        argc++;
    }
    argv[argc] = NULL;
    FILE *out = tmpfile();
    cr_assert_not_null(out);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(STDOUT_FILENO);
    int saved_err = dup(STDERR_FILENO);
    cr_assert(saved_out >= 0 && saved_err >= 0);
    cr_assert_geq(dup2(fileno(out), STDOUT_FILENO), 0);
    cr_assert_geq(dup2(fileno(out), STDERR_FILENO), 0);
    run_result_t r = {0};
    r.status = crmctl_conversations_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    r.out = slurp(out);
    fclose(out);
    return r;
}

static void expect_run(const char *const *args, int status, const char *needle)
{
    run_result_t r = run(args);
    cr_expect_eq(r.status, status, "exit %d: %s", r.status, r.out);
    cr_expect_not_null(strstr(r.out, needle), "expected \"%s\" in: %s", needle, r.out);
    cr_expect_null(strstr(r.out, "33612345678"), "the number was printed: %s", r.out);
    free(r.out);
}

Test(crmctl_conversations, usage_errors_exit_2)
{
    expect_run((const char *[]){"conversations", NULL}, 2, "usage: crmctl conversations set");
    expect_run((const char *[]){"conversations", "get", NULL}, 2, "usage:");
    expect_run((const char *[]){"conversations", "set", "--tenant", "acme", NULL}, 2,
               "--tenant, --phone and --last-inbound are required");
    expect_run((const char *[]){"conversations", "set", "--tenant", "acme", "--phone", "33612345678", "--last-inbound",
                                "now", NULL},
               2, "--phone: must be an E.164 number like +14155550100");
    expect_run((const char *[]){"conversations", "set", "--tenant", "ac me", "--phone", "+33612345678",
                                "--last-inbound", "now", NULL},
               2, "--tenant: must be");
    expect_run((const char *[]){"conversations", "set", "--tenant", "acme", "--phone", "+33612345678",
                                "--last-inbound", "yesterday", NULL},
               2, "--last-inbound: must be an RFC 3339 time");
    expect_run((const char *[]){"conversations", "set", "--tenant", "acme", "--phone", "+33612345678",
                                "--last-inbound", "now", "--channel", "email", NULL},
               2, "--channel: must be whatsapp or sms");
    expect_run((const char *[]){"conversations", "set", "--tenant", "acme", "--phone", "+33612345678",
                                "--last-inbound", "now", "--bogus", "x", NULL},
               2, "unexpected argument '--bogus'");
    expect_run((const char *[]){"conversations", "set", "--tenant", NULL}, 2, "--tenant needs a value");
    expect_run((const char *[]){"conversations", "--help", NULL}, 0, "HMAC-SHA256(CRM_DATA_KEY, number)");
}

Test(crmctl_conversations, key_and_database_are_required)
{
    const char *const args[] = {"conversations", "set", "--tenant", "acme", "--phone", "+33612345678",
                                "--last-inbound", "2026-11-20T09:00:00Z", NULL};
    unsetenv("CRM_DATA_KEY");
    unsetenv("DATABASE_URL");
    expect_run(args, 1, "CRM_DATA_KEY: must be set to the workers' key (at least 32 characters)");
    setenv("CRM_DATA_KEY", "too-short", 1);
    expect_run(args, 1, "CRM_DATA_KEY: must be set");
    setenv("CRM_DATA_KEY", KEY, 1);
    expect_run(args, 1, "DATABASE_URL is not set");
}
