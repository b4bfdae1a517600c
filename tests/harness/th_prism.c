/* th_prism.c - Prism for contract tests. See th_prism.h. */
#include "th_prism.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef CRM_BINARY_DIR
#error "CRM_BINARY_DIR must be defined by the build (tests/CMakeLists.txt)"
#endif

#define PRISM_DIR CRM_BINARY_DIR "/prism"
#define PRISM_BIN PRISM_DIR "/node_modules/.bin/prism"
#define INSTALL_TIMEOUT_MS (10 * 60 * 1000)
#define READY_TIMEOUT_MS 120000

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The last lines of a command's output, for an error message. */
static const char *tail(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n > max ? s + n - max : s;
}

int th_prism_install(char *bin, size_t binlen, char *errstr, size_t errlen)
{
    const size_t outlen = 1 << 16;
    char *out = NULL;
    int rc = -1;
    int lock = -1;
    if (snprintf(bin, binlen, "%s", PRISM_BIN) >= (int)binlen) {
        snprintf(errstr, errlen, "th_prism: path buffer too small");
        return -1;
    }
    if (access(PRISM_BIN, X_OK) == 0)
        return 0;
    out = malloc(outlen);
    if (out == NULL) {
        snprintf(errstr, errlen, "th_prism: out of memory");
        return -1;
    }
    out[0] = '\0';
    if (mkdir(PRISM_DIR, 0755) != 0 && errno != EEXIST) {
        snprintf(errstr, errlen, "th_prism: cannot create %s: %s", PRISM_DIR, strerror(errno));
        goto cleanup;
    }
    /* Two test processes may get here at once; one installs, the other
     * waits for it and then finds the CLI. */
    lock = open(PRISM_DIR "/.install.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0 || flock(lock, LOCK_EX) != 0) {
        snprintf(errstr, errlen, "th_prism: cannot lock %s/.install.lock: %s", PRISM_DIR, strerror(errno));
        goto cleanup;
    }
    if (access(PRISM_BIN, X_OK) == 0) {
        rc = 0;
        goto cleanup;
    }
    char *const probe[] = {"npm", "--version", NULL};
    if (th_run(probe, NULL, out, outlen, 60000) != 0) {
        snprintf(errstr, errlen,
                 "th_prism: npm is not available (%s). The Prism contract test needs Node.js and npm to install "
                 TH_PRISM_PACKAGE " into " PRISM_DIR "; install them (Debian: apt-get install nodejs npm).",
                 out[0] != '\0' ? tail(out, 200) : "not found on PATH");
        goto cleanup;
    }
    char *const install[] = {"npm",      "install", "--prefix",   PRISM_DIR, "--no-audit", "--no-fund",
                             "--silent", "--no-save", TH_PRISM_PACKAGE, NULL};
    int code = th_run(install, NULL, out, outlen, INSTALL_TIMEOUT_MS);
    if (code != 0 || access(PRISM_BIN, X_OK) != 0) {
        snprintf(errstr, errlen, "th_prism: `npm install --prefix " PRISM_DIR " " TH_PRISM_PACKAGE
                                 "` failed (exit %d); is the npm registry reachable? Output: %s",
                 code, tail(out, 1500));
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (lock >= 0)
        close(lock); /* releases the lock */
    free(out);
    return rc;
}

int th_prism_start(th_prism_t *p, const char *spec, char *errstr, size_t errlen)
{
    char bin[512], port[16];
    memset(p, 0, sizeof *p);
    if (access(spec, R_OK) != 0) {
        snprintf(errstr, errlen, "th_prism: cannot read the spec %s: %s", spec, strerror(errno));
        return -1;
    }
    if (th_prism_install(bin, sizeof bin, errstr, errlen) != 0)
        return -1;
    p->port = th_free_port();
    snprintf(port, sizeof port, "%d", p->port);
    snprintf(p->url, sizeof p->url, "http://127.0.0.1:%d", p->port);
    char *const argv[] = {bin, "mock", "-h", "127.0.0.1", "-p", port, (char *)spec, NULL};
    /* No colours in the log file. */
    char *const env[] = {"FORCE_COLOR=0", "NO_COLOR=1", NULL};
    if (th_proc_start(&p->proc, "prism", argv, env) != 0) {
        snprintf(errstr, errlen, "th_prism: cannot start %s", bin);
        return -1;
    }
    p->running = 1;
    long long deadline = mono_ms() + READY_TIMEOUT_MS;
    while (mono_ms() < deadline) {
        long status = 0;
        char body[256];
        /* Any HTTP answer (404 for an unknown route) means it listens. */
        if (th_http("GET", p->url, NULL, NULL, &status, body, sizeof body) == 0 && status > 0)
            return 0;
        if (!th_proc_alive(&p->proc)) {
            snprintf(errstr, errlen, "th_prism: prism exited before listening; see %s", p->proc.log_path);
            p->running = 0;
            return -1;
        }
        sleep_ms(250);
    }
    snprintf(errstr, errlen, "th_prism: prism did not listen within %d s; see %s", READY_TIMEOUT_MS / 1000,
             p->proc.log_path);
    th_prism_stop(p);
    return -1;
}

void th_prism_stop(th_prism_t *p)
{
    if (p == NULL || !p->running)
        return;
    th_proc_stop(&p->proc, SIGTERM, 10000);
    p->running = 0;
}
