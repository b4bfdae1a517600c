/* test_th_proc.c - the process harness the integration tests rely on. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crm/http.h"
#include "th_proc.h"

Test(th_proc, run_captures_output_and_exit_code)
{
    char out[256];
    char *const argv[] = {"/bin/sh", "-c", "echo hi; echo err >&2; exit 3", NULL};
    cr_assert_eq(th_run(argv, NULL, out, sizeof out, 10000), 3);
    cr_assert_str_eq(out, "hi\nerr\n");
}

Test(th_proc, run_applies_env_overrides)
{
    char out[256];
    char *const argv[] = {"/bin/sh", "-c", "printf '%s/%s' \"$TH_A\" \"$HOME\"", NULL};
    char *const env[] = {"TH_A=one", "HOME=/nowhere", NULL};
    cr_assert_eq(th_run(argv, env, out, sizeof out, 10000), 0);
    cr_assert_str_eq(out, "one//nowhere");
}

Test(th_proc, run_truncates_and_drains_long_output)
{
    char out[8];
    /* 1 MB of output must not block the child on a full pipe. */
    char *const argv[] = {"/bin/sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x; exit 0", NULL};
    cr_assert_eq(th_run(argv, NULL, out, sizeof out, 20000), 0);
    cr_assert_str_eq(out, "xxxxxxx");
}

Test(th_proc, run_reports_missing_binary_and_timeout)
{
    char out[64];
    char *const missing[] = {"/nonexistent/binary", NULL};
    cr_assert_eq(th_run(missing, NULL, out, sizeof out, 1000), -1);

    char *const slow[] = {"/bin/sleep", "30", NULL};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    cr_assert_eq(th_run(slow, NULL, out, sizeof out, 300), -1);
    clock_gettime(CLOCK_MONOTONIC, &b);
    cr_assert_lt(b.tv_sec - a.tv_sec, 5);
}

Test(th_proc, free_port_is_bindable)
{
    int p1 = th_free_port();
    cr_assert_gt(p1, 0);
    cr_assert_lt(p1, 65536);
}

Test(th_proc, start_and_stop_with_sigterm)
{
    th_proc_t p;
    char *const argv[] = {"/bin/sleep", "30", NULL};
    cr_assert_eq(th_proc_start(&p, "sleeper", argv, NULL), 0);
    cr_assert_gt(p.pid, 0);
    cr_assert(th_proc_alive(&p));
    cr_assert_eq(access(p.log_path, F_OK), 0, "%s", p.log_path);
    char want[32];
    snprintf(want, sizeof want, "sleeper-%d.log", (int)p.pid);
    cr_assert_not_null(strstr(p.log_path, want), "%s", p.log_path);

    int st = th_proc_stop(&p, SIGTERM, 5000);
    cr_assert(WIFSIGNALED(st));
    cr_assert_eq(WTERMSIG(st), SIGTERM);
    cr_assert_eq(th_proc_alive(&p), 0);
}

Test(th_proc, stop_escalates_to_sigkill)
{
    th_proc_t p;
    char *const argv[] = {"/bin/sh", "-c", "trap '' TERM; echo started; sleep 30", NULL};
    cr_assert_eq(th_proc_start(&p, "stubborn", argv, NULL), 0);
    usleep(200 * 1000);
    int st = th_proc_stop(&p, SIGTERM, 300);
    cr_assert(WIFSIGNALED(st));
    cr_assert_eq(WTERMSIG(st), SIGKILL);
}

Test(th_proc, log_captures_output_and_exit_is_seen)
{
    th_proc_t p;
    char *const argv[] = {"/bin/sh", "-c", "echo \"to log $TH_X\"; echo oops >&2; exit 7", NULL};
    char *const env[] = {"TH_X=42", NULL};
    cr_assert_eq(th_proc_start(&p, "short", argv, env), 0);
    for (int i = 0; i < 100 && th_proc_alive(&p); i++)
        usleep(20 * 1000);
    cr_assert_eq(th_proc_alive(&p), 0);
    /* Exited but not reaped: stop still returns its status. */
    int st = th_proc_stop(&p, SIGTERM, 1000);
    cr_assert(WIFEXITED(st));
    cr_assert_eq(WEXITSTATUS(st), 7);

    char buf[256] = {0};
    FILE *f = fopen(p.log_path, "r");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cr_assert_str_eq(buf, "to log 42\noops\n");
}

Test(th_proc, wait_ready_fails_fast_when_child_exits)
{
    th_proc_t p;
    char *const argv[] = {"/bin/sh", "-c", "exit 1", NULL};
    cr_assert_eq(th_proc_start(&p, "dies", argv, NULL), 0);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    cr_assert_eq(th_proc_wait_ready(&p, th_free_port(), 10000), -1);
    clock_gettime(CLOCK_MONOTONIC, &b);
    cr_assert_lt(b.tv_sec - a.tv_sec, 5);
    th_proc_stop(&p, SIGTERM, 1000);
}

static int ready_after_calls(void *ctx)
{
    int *calls = ctx;
    return ++*calls >= 3;
}

/* wait_ready and th_http against our own server: a stand-in child (sleep)
 * keeps th_proc_alive true while the in-process server becomes ready on the
 * third poll. */
Test(th_proc, wait_ready_and_http_against_a_server)
{
    int calls = 0;
    char err[128];
    cmn_http_config_t cfg = {.bind_address = "127.0.0.1", .threads = 1, .max_body_bytes = 1024,
                             .max_header_bytes = 8192, .timeout_seconds = 5,
                             .ready = ready_after_calls, .ctx = &calls};
    cmn_http_server_t *s = cmn_http_server_new(&cfg, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    int port = cmn_http_server_port(s);

    th_proc_t p;
    char *const argv[] = {"/bin/sleep", "30", NULL};
    cr_assert_eq(th_proc_start(&p, "standin", argv, NULL), 0);
    cr_assert_eq(th_proc_wait_ready(&p, port, 5000), 0);
    cr_assert_geq(calls, 3);

    char url[64];
    char out[128];
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    cr_assert_eq(th_http("GET", url, NULL, NULL, &status, out, sizeof out), 0);
    cr_assert_eq(status, 200);
    cr_assert_str_eq(out, "{\"status\":\"ok\"}");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/x", port);
    cr_assert_eq(th_http("POST", url, "{}", "application/json", &status, out, sizeof out), 0);
    cr_assert_eq(status, 404);

    th_proc_stop(&p, SIGTERM, 2000);
    cmn_http_server_destroy(s);
}

Test(th_proc, bin_lookup_misses_cleanly)
{
    char out[512];
    cr_assert_null(th_bin("no-such-binary", out, sizeof out));
    cr_assert_str_eq(out, "");
}
