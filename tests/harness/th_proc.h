/* th_proc.h - start and stop the project's real binaries from tests.
 *
 * A th_proc_t is a child process with its own environment (the parent's
 * plus overrides), stdout and stderr captured to a log file under
 * CRM_BINARY_DIR/test-logs/<name>-<pid>.log so failures can be read. */
#ifndef TH_PROC_H
#define TH_PROC_H

#include <stddef.h>
#include <sys/types.h>

typedef struct th_proc {
    pid_t pid;
    char name[64];
    char log_path[512];
} th_proc_t;

/* Path of a built binary: CRM_BINARY_DIR/services/<dir>/<name> or tools/crmctl/crmctl.
 * Looks the name up in the build tree ("crm-router", "crmctl", ...). Static buffer per call site: copy it. */
const char *th_bin(const char *name, char *out, size_t outlen);

/* Starts argv[0] (a path) with env overrides: a NULL-terminated list of
 * "NAME=value" strings added to (or replacing in) the current environment.
 * The child is killed (SIGKILL) if the calling thread's process dies first,
 * e.g. on a failed assertion (through setpriv --pdeathsig, when installed).
 * Returns 0 or -1. */
int th_proc_start(th_proc_t *p, const char *name, char *const argv[], char *const env_overrides[]);

/* Polls http://127.0.0.1:<port>/readyz until it answers 200 or timeout_ms
 * passes (and fails early if the process exited). Returns 0 or -1. */
int th_proc_wait_ready(th_proc_t *p, int port, int timeout_ms);

/* Sends sig and waits up to timeout_ms for exit (SIGKILL after that).
 * Returns the exit status as from waitpid, or -1. */
int th_proc_stop(th_proc_t *p, int sig, int timeout_ms);

/* 1 while the child runs. */
int th_proc_alive(th_proc_t *p);

/* Runs a command to completion, capturing stdout+stderr into out (NUL-terminated,
 * truncated to outlen). Returns the exit code, or -1 if it could not run. */
int th_run(char *const argv[], char *const env_overrides[], char *out, size_t outlen, int timeout_ms);

/* A TCP port that is free right now on 127.0.0.1. */
int th_free_port(void);

/* HTTP helper over libcurl: method, url, optional body and content type.
 * Fills *status and the response body into out (truncated). Returns 0 or -1. */
int th_http(const char *method, const char *url, const char *body, const char *content_type,
            long *status, char *out, size_t outlen);

#endif
