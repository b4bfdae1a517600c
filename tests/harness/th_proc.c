/* th_proc.c - start, watch and stop the project's binaries from tests.
 *
 * Children are started with posix_spawn: it is safe in the multi-threaded
 * test processes (Criterion, libcurl, librdkafka threads) where fork() plus
 * arbitrary code in the child would not be. Every child gets default signal
 * dispositions and an empty signal mask so SIGTERM reaches it even when the
 * test runner blocks or ignores signals. */
/* pipe2() and mkostemp() create the descriptors close-on-exec atomically,
 * so a child spawned by another test thread cannot inherit them. */
#define _GNU_SOURCE
#include "th_proc.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CRM_BINARY_DIR
#error "CRM_BINARY_DIR must be defined by the build (tests/CMakeLists.txt)"
#endif

extern char **environ;

static const char *const service_dirs[] = {"ingest",      "router",          "email-worker",
                                           "projector",   "sms-worker",      "whatsapp-worker",
                                           "webhook-receiver"};

static long long now_ms(void)
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

const char *th_bin(const char *name, char *out, size_t outlen)
{
    if (name == NULL || out == NULL || outlen == 0)
        return NULL;
    for (size_t i = 0; i < sizeof service_dirs / sizeof service_dirs[0]; i++) {
        int n = snprintf(out, outlen, "%s/services/%s/%s", CRM_BINARY_DIR, service_dirs[i], name);
        if (n > 0 && (size_t)n < outlen && access(out, X_OK) == 0)
            return out;
    }
    {
        int n = snprintf(out, outlen, "%s/tools/crmctl/%s", CRM_BINARY_DIR, name);
        if (n > 0 && (size_t)n < outlen && access(out, X_OK) == 0)
            return out;
    }
    out[0] = '\0';
    return NULL;
}

/* Builds the child's environment: the current one with every variable named
 * in overrides replaced, plus the overrides. Returns a malloc'd array of
 * borrowed strings (free only the array), or NULL. */
static char **build_env(char *const overrides[])
{
    size_t nenv = 0;
    size_t nover = 0;
    size_t k = 0;
    char **env;

    while (environ != NULL && environ[nenv] != NULL)
        nenv++;
    while (overrides != NULL && overrides[nover] != NULL)
        nover++;
    env = calloc(nenv + nover + 1, sizeof *env);
    if (env == NULL)
        return NULL;
    for (size_t i = 0; i < nenv; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t namelen = eq != NULL ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool replaced = false;
        for (size_t j = 0; j < nover && !replaced; j++)
            replaced = strncmp(overrides[j], environ[i], namelen) == 0 && overrides[j][namelen] == '=';
        if (!replaced)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < nover; j++)
        env[k++] = overrides[j];
    env[k] = NULL;
    return env;
}

/* Spawn attributes shared by th_proc_start and th_run: default dispositions
 * for every signal and nothing blocked. */
static int spawnattr_init(posix_spawnattr_t *attr)
{
    sigset_t all;
    sigset_t none;

    if (posix_spawnattr_init(attr) != 0)
        return -1;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(attr, &all);
    posix_spawnattr_setsigmask(attr, &none);
    posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    return 0;
}

/* util-linux's setpriv, which sets the parent-death signal and execs the
 * real program (posix_spawn has no way to set it itself). */
#define TH_PROC_SETPRIV "/usr/bin/setpriv"
#define TH_PROC_MAX_ARGS 64

/* argv behind `setpriv --pdeathsig KILL --` into wrapped (room for
 * TH_PROC_MAX_ARGS), so the child is killed when the test process that
 * started it dies, however it dies: a failed assertion ends the test
 * process without its cleanup, and a service left running would go on
 * using CPU and ports for the rest of the run. Without setpriv (or with
 * too many arguments) argv is used as it is. Returns the argv to spawn. */
static char *const *wrap_pdeathsig(char *const argv[], char **wrapped)
{
    size_t n = 0;
    while (argv[n] != NULL)
        n++;
    if (n + 5 > TH_PROC_MAX_ARGS || access(TH_PROC_SETPRIV, X_OK) != 0)
        return argv;
    wrapped[0] = TH_PROC_SETPRIV;
    wrapped[1] = "--pdeathsig";
    wrapped[2] = "KILL";
    wrapped[3] = "--";
    for (size_t i = 0; i <= n; i++)
        wrapped[4 + i] = argv[i];
    return wrapped;
}

int th_proc_start(th_proc_t *p, const char *name, char *const argv[], char *const env_overrides[])
{
    char *wrapped[TH_PROC_MAX_ARGS];
    int rc = -1;
    int logfd = -1;
    char **env = NULL;
    char tmp_path[512];
    char dir[400];
    bool attr_ok = false;
    bool actions_ok = false;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    pid_t pid = -1;
    int err;

    if (p == NULL || name == NULL || argv == NULL || argv[0] == NULL)
        return -1;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);

    /* The pid, which names the log, is known only after the spawn, so the
     * log starts under a temporary name and is renamed (the open descriptor
     * the child writes to is unaffected). */
    snprintf(dir, sizeof dir, "%s/test-logs", CRM_BINARY_DIR);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "th_proc: mkdir %s: %s\n", dir, strerror(errno));
        goto cleanup;
    }
    snprintf(tmp_path, sizeof tmp_path, "%s/%s-starting-XXXXXX", dir, p->name);
    logfd = mkostemp(tmp_path, O_CLOEXEC | O_APPEND);
    if (logfd < 0) {
        fprintf(stderr, "th_proc: cannot create log in %s: %s\n", dir, strerror(errno));
        goto cleanup;
    }
    env = build_env(env_overrides);
    if (env == NULL)
        goto cleanup;
    if (spawnattr_init(&attr) != 0)
        goto cleanup;
    attr_ok = true;
    if (posix_spawn_file_actions_init(&actions) != 0)
        goto cleanup;
    actions_ok = true;
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, logfd, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, logfd, STDERR_FILENO);

    char *const *spawn_argv = wrap_pdeathsig(argv, wrapped);
    err = posix_spawnp(&pid, spawn_argv[0], &actions, &attr, spawn_argv, env);
    if (err != 0) {
        fprintf(stderr, "th_proc: cannot start %s: %s\n", argv[0], strerror(err));
        goto cleanup;
    }
    p->pid = pid;
    snprintf(p->log_path, sizeof p->log_path, "%s/%s-%d.log", dir, p->name, (int)pid);
    if (rename(tmp_path, p->log_path) != 0) {
        /* The child runs fine either way; keep pointing at the real file. */
        snprintf(p->log_path, sizeof p->log_path, "%s", tmp_path);
    }
    tmp_path[0] = '\0';
    rc = 0;

cleanup:
    if (rc != 0 && logfd >= 0 && tmp_path[0] != '\0')
        unlink(tmp_path);
    if (logfd >= 0)
        close(logfd);
    if (actions_ok)
        posix_spawn_file_actions_destroy(&actions);
    if (attr_ok)
        posix_spawnattr_destroy(&attr);
    free(env);
    return rc;
}

int th_proc_alive(th_proc_t *p)
{
    siginfo_t info;

    if (p == NULL || p->pid <= 0)
        return 0;
    /* WNOWAIT leaves an exited child reapable so th_proc_stop can still
     * collect its status. */
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)p->pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return 0;
    return info.si_pid == 0;
}

/* Discards the response body: wait_ready only cares about the status. */
static size_t discard_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    return size * nmemb;
}

int th_proc_wait_ready(th_proc_t *p, int port, int timeout_ms)
{
    int rc = -1;
    char url[64];
    long long deadline = now_ms() + timeout_ms;
    CURL *curl = curl_easy_init();

    if (curl == NULL || p == NULL)
        goto cleanup;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/readyz", port);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 1000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    for (;;) {
        long status = 0;
        if (!th_proc_alive(p)) {
            fprintf(stderr, "th_proc: %s exited before it was ready; see %s\n", p->name, p->log_path);
            goto cleanup;
        }
        if (curl_easy_perform(curl) == CURLE_OK &&
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200) {
            rc = 0;
            goto cleanup;
        }
        if (now_ms() >= deadline) {
            fprintf(stderr, "th_proc: %s not ready on port %d after %d ms; see %s\n", p->name, port,
                    timeout_ms, p->log_path);
            goto cleanup;
        }
        sleep_ms(100);
    }

cleanup:
    if (curl != NULL)
        curl_easy_cleanup(curl);
    return rc;
}

/* Waits for pid until deadline (ms, monotonic); returns 1 and the status
 * when it exited, 0 on timeout, -1 on error. */
static int wait_until(pid_t pid, long long deadline, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
        if (now_ms() >= deadline)
            return 0;
        sleep_ms(10);
    }
}

int th_proc_stop(th_proc_t *p, int sig, int timeout_ms)
{
    int status = 0;
    int w;

    if (p == NULL || p->pid <= 0)
        return -1;
    /* ESRCH cannot happen for our unreaped child (a zombie still accepts
     * signals), so an error here is worth a message but not a stop. */
    if (kill(p->pid, sig) != 0)
        fprintf(stderr, "th_proc: kill(%d, %d): %s\n", (int)p->pid, sig, strerror(errno));
    w = wait_until(p->pid, now_ms() + timeout_ms, &status);
    if (w == 0) {
        fprintf(stderr, "th_proc: %s ignored signal %d for %d ms; sending SIGKILL\n", p->name, sig,
                timeout_ms);
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, &status, 0) < 0) {
            if (errno != EINTR) {
                w = -1;
                break;
            }
        }
        if (w == 0)
            w = 1;
    }
    p->pid = 0;
    return w == 1 ? status : -1;
}

int th_run(char *const argv[], char *const env_overrides[], char *out, size_t outlen, int timeout_ms)
{
    int rc = -1;
    int pipefd[2] = {-1, -1};
    char **env = NULL;
    bool attr_ok = false;
    bool actions_ok = false;
    bool timed_out = false;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    pid_t pid = -1;
    size_t used = 0;
    long long deadline = now_ms() + timeout_ms;
    int status = 0;
    int err;

    if (out != NULL && outlen > 0)
        out[0] = '\0';
    if (argv == NULL || argv[0] == NULL)
        return -1;
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        goto cleanup;
    env = build_env(env_overrides);
    if (env == NULL)
        goto cleanup;
    if (spawnattr_init(&attr) != 0)
        goto cleanup;
    attr_ok = true;
    if (posix_spawn_file_actions_init(&actions) != 0)
        goto cleanup;
    actions_ok = true;
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDERR_FILENO);
    err = posix_spawnp(&pid, argv[0], &actions, &attr, argv, env);
    if (err != 0) {
        fprintf(stderr, "th_run: cannot start %s: %s\n", argv[0], strerror(err));
        pid = -1;
        goto cleanup;
    }
    /* Our copy of the write end must go, or read() never sees EOF. */
    close(pipefd[1]);
    pipefd[1] = -1;

    for (;;) {
        char chunk[4096];
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        long long left = deadline - now_ms();
        ssize_t n;
        int pr;

        if (left <= 0) {
            timed_out = true;
            break;
        }
        pr = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            break;
        if (pr == 0)
            continue;
        n = read(pipefd[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        /* Keep draining past outlen so the child never blocks on a full pipe. */
        if (out != NULL && outlen > 0 && used < outlen - 1) {
            size_t take = (size_t)n < outlen - 1 - used ? (size_t)n : outlen - 1 - used;
            memcpy(out + used, chunk, take);
            used += take;
            out[used] = '\0';
        }
    }
    if (timed_out) {
        fprintf(stderr, "th_run: %s did not finish in %d ms; killing it\n", argv[0], timeout_ms);
        kill(pid, SIGKILL);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            goto cleanup;
    }
    if (timed_out)
        rc = -1;
    else if (WIFEXITED(status))
        rc = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        rc = 128 + WTERMSIG(status); /* the shell's convention */

cleanup:
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    if (actions_ok)
        posix_spawn_file_actions_destroy(&actions);
    if (attr_ok)
        posix_spawnattr_destroy(&attr);
    free(env);
    return rc;
}

int th_free_port(void)
{
    int port = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;

    if (fd < 0)
        return -1;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0)
        goto cleanup;
    if (getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
        goto cleanup;
    port = ntohs(sin.sin_port);

cleanup:
    close(fd);
    return port;
}

typedef struct http_sink {
    char *out;
    size_t outlen;
    size_t used;
} http_sink_t;

/* Copies what fits into the caller's buffer and swallows the rest, so a
 * long body truncates instead of failing the transfer. */
static size_t sink_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    http_sink_t *sink = userdata;
    size_t n = size * nmemb;

    if (sink->out != NULL && sink->outlen > 0 && sink->used < sink->outlen - 1) {
        size_t take = n < sink->outlen - 1 - sink->used ? n : sink->outlen - 1 - sink->used;
        memcpy(sink->out + sink->used, ptr, take);
        sink->used += take;
        sink->out[sink->used] = '\0';
    }
    return n;
}

int th_http(const char *method, const char *url, const char *body, const char *content_type,
            long *status, char *out, size_t outlen)
{
    int rc = -1;
    CURL *curl = NULL;
    struct curl_slist *headers = NULL;
    char ct[256];
    http_sink_t sink = {out, outlen, 0};
    CURLcode cc;

    if (out != NULL && outlen > 0)
        out[0] = '\0';
    if (status != NULL)
        *status = 0;
    if (method == NULL || url == NULL)
        return -1;
    curl = curl_easy_init();
    if (curl == NULL)
        goto cleanup;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink_cb);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
        /* POSTFIELDS switches curl to POST; keep the method asked for. */
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    }
    if (content_type != NULL) {
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
        struct curl_slist *h = curl_slist_append(headers, ct);
        if (h == NULL)
            goto cleanup;
        headers = h;
    }
    /* Sending the body straight away avoids curl's 1 s wait for a
     * "100 Continue" on large bodies. */
    {
        struct curl_slist *h = curl_slist_append(headers, "Expect:");
        if (h == NULL)
            goto cleanup;
        headers = h;
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    cc = curl_easy_perform(curl);
    if (cc != CURLE_OK) {
        fprintf(stderr, "th_http: %s %s: %s\n", method, url, curl_easy_strerror(cc));
        goto cleanup;
    }
    if (status != NULL)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    rc = 0;

cleanup:
    curl_slist_free_all(headers);
    if (curl != NULL)
        curl_easy_cleanup(curl);
    return rc;
}
