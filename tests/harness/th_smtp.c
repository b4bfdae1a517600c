/* th_smtp.c - the SMTP sandbox for the tests (see th_smtp.h).
 *
 * Each sandbox gets its own directory with a fresh CA and server certificate
 * (tools/smtp-sandbox/make_ca.sh), a random AUTH password, and a Maildir.
 * The server is tools/smtp-sandbox/smtp_sandbox.py run by the system python
 * (/usr/bin/python3, where Debian's python3-aiosmtpd lives), started through
 * th_proc so its output lands in test-logs/ like every other child's. */
#include "th_smtp.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "th_proc.h"

#ifndef CRM_SOURCE_DIR
#error "CRM_SOURCE_DIR must be defined by the build (tests/CMakeLists.txt)"
#endif

#define SANDBOX_PYTHON "/usr/bin/python3"
#define SANDBOX_USER "crm-test"
#define READY_TIMEOUT_MS 20000

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

/* 1 once something accepts TCP connections on 127.0.0.1:port. */
static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    int ok;
    if (fd < 0)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* 16 random hex characters from the kernel's CSPRNG. */
static int random_hex(char *out, size_t outlen)
{
    unsigned char raw[8];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, raw, sizeof raw) : -1;
    if (fd >= 0)
        close(fd);
    if (n != (ssize_t)sizeof raw || outlen < 2 * sizeof raw + 1)
        return -1;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

int th_smtp_start(th_smtp_t *s, const char *name)
{
    char out[2048];
    char port_s[16];
    char script[512], make_ca[512], cert[640], key[640];
    char pass_env[128];
    th_proc_t proc;

    if (s == NULL || name == NULL)
        return -1;
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s/test-smtp/%s", CRM_BINARY_DIR, name);
    snprintf(s->maildir, sizeof s->maildir, "%s/maildir", s->dir);
    snprintf(s->ca_file, sizeof s->ca_file, "%s/ca.pem", s->dir);
    snprintf(cert, sizeof cert, "%s/server.pem", s->dir);
    snprintf(key, sizeof key, "%s/server.key", s->dir);
    snprintf(script, sizeof script, "%s/tools/smtp-sandbox/smtp_sandbox.py", CRM_SOURCE_DIR);
    snprintf(make_ca, sizeof make_ca, "%s/tools/smtp-sandbox/make_ca.sh", CRM_SOURCE_DIR);
    snprintf(s->username, sizeof s->username, "%s", SANDBOX_USER);
    if (random_hex(s->password, sizeof s->password) != 0) {
        fprintf(stderr, "th_smtp: no randomness for the password\n");
        return -1;
    }

    /* A previous run's messages must not count in this one. */
    char *const rm_argv[] = {"rm", "-rf", s->dir, NULL};
    if (th_run(rm_argv, NULL, out, sizeof out, 30000) != 0) {
        fprintf(stderr, "th_smtp: cannot clear %s: %s\n", s->dir, out);
        return -1;
    }
    char *const ca_argv[] = {"/bin/sh", make_ca, s->dir, NULL};
    if (th_run(ca_argv, NULL, out, sizeof out, 60000) != 0) {
        fprintf(stderr, "th_smtp: make_ca.sh failed: %s\n", out);
        return -1;
    }

    /* An existing empty Maildir directory is how `crmctl dev up` hands it
     * over too; the sandbox must fill in tmp/, new/ and cur/ itself. */
    if (mkdir(s->maildir, 0755) != 0) {
        fprintf(stderr, "th_smtp: mkdir %s: %s\n", s->maildir, strerror(errno));
        return -1;
    }

    s->port = th_free_port();
    if (s->port <= 0) {
        fprintf(stderr, "th_smtp: no free port\n");
        return -1;
    }
    snprintf(port_s, sizeof port_s, "%d", s->port);
    snprintf(pass_env, sizeof pass_env, "SMTP_SANDBOX_PASSWORD=%s", s->password);
    char *const argv[] = {SANDBOX_PYTHON, script,  "--host",     "127.0.0.1", "--port", port_s,
                          "--maildir",    s->maildir, "--tls-cert", cert,        "--tls-key", key,
                          "--auth-user",  s->username, "--fail-rcpt-prefix", "fail",
                          "--slow-rcpt-prefix", "slow", NULL};
    char *const env[] = {pass_env, "PYTHONUNBUFFERED=1", NULL};
    if (th_proc_start(&proc, "smtp-sandbox", argv, env) != 0)
        return -1;
    s->pid = (int)proc.pid;

    long long deadline = mono_ms() + READY_TIMEOUT_MS;
    while (!port_open(s->port)) {
        if (!th_proc_alive(&proc)) {
            fprintf(stderr, "th_smtp: the sandbox exited at start; see %s\n", proc.log_path);
            th_proc_stop(&proc, SIGKILL, 1000);
            s->pid = 0;
            return -1;
        }
        if (mono_ms() >= deadline) {
            fprintf(stderr, "th_smtp: the sandbox did not listen on %d; see %s\n", s->port, proc.log_path);
            th_smtp_stop(s);
            return -1;
        }
        sleep_ms(50);
    }
    return 0;
}

void th_smtp_stop(th_smtp_t *s)
{
    if (s == NULL || s->pid <= 0)
        return;
    th_proc_t proc;
    memset(&proc, 0, sizeof proc);
    proc.pid = (pid_t)s->pid;
    snprintf(proc.name, sizeof proc.name, "smtp-sandbox");
    th_proc_stop(&proc, SIGTERM, 5000);
    s->pid = 0;
}

/* The paths of every message file (new/ then cur/), sorted by file name,
 * which Maildir makes start with the delivery time. */
static int cmp_str(const void *a, const void *b)
{
    const char *const *x = a;
    const char *const *y = b;
    const char *bx = strrchr(*x, '/');
    const char *by = strrchr(*y, '/');
    return strcmp(bx != NULL ? bx : *x, by != NULL ? by : *y);
}

static char **list_messages(const th_smtp_t *s, size_t *n)
{
    char **names = NULL;
    size_t count = 0, cap = 0;
    const char *subdirs[] = {"new", "cur"};
    *n = 0;
    for (size_t k = 0; k < 2; k++) {
        char path[800];
        snprintf(path, sizeof path, "%s/%s", s->maildir, subdirs[k]);
        DIR *d = opendir(path);
        if (d == NULL)
            continue;
        for (;;) {
            struct dirent *e = readdir(d);
            if (e == NULL)
                break;
            if (e->d_name[0] == '.')
                continue;
            if (count == cap) {
                size_t ncap = cap != 0 ? cap * 2 : 16;
                char **grown = realloc(names, ncap * sizeof *grown);
                if (grown == NULL)
                    break;
                names = grown;
                cap = ncap;
            }
            size_t len = strlen(path) + strlen(e->d_name) + 2;
            names[count] = malloc(len);
            if (names[count] == NULL)
                break;
            snprintf(names[count], len, "%s/%s", path, e->d_name);
            count++;
        }
        closedir(d);
    }
    if (count > 0)
        qsort(names, count, sizeof *names, cmp_str);
    *n = count;
    return names;
}

static void free_list(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int th_smtp_count(const th_smtp_t *s)
{
    size_t n = 0;
    char **names = list_messages(s, &n);
    free_list(names, n);
    return (int)n;
}

int th_smtp_wait(const th_smtp_t *s, int n, int timeout_ms)
{
    long long deadline = mono_ms() + timeout_ms;
    int have = th_smtp_count(s);
    while (have < n && mono_ms() < deadline) {
        sleep_ms(50);
        have = th_smtp_count(s);
    }
    return have;
}

char *th_smtp_message(const th_smtp_t *s, int i)
{
    size_t n = 0;
    char *text = NULL;
    char **names = list_messages(s, &n);
    if (i < 0 || (size_t)i >= n)
        goto cleanup;
    FILE *f = fopen(names[i], "rb");
    if (f == NULL)
        goto cleanup;
    if (fseek(f, 0, SEEK_END) == 0) {
        long len = ftell(f);
        if (len >= 0 && fseek(f, 0, SEEK_SET) == 0) {
            text = malloc((size_t)len + 1);
            if (text != NULL) {
                size_t got = fread(text, 1, (size_t)len, f);
                text[got] = '\0';
            }
        }
    }
    fclose(f);
cleanup:
    free_list(names, n);
    return text;
}
