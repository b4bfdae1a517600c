/* crmctl_dev.c - `crmctl dev up | down | status`: the embedded default.
 *
 * `dev up` starts, under one state directory (var/dev unless CRM_DEV_DIR says
 * otherwise), everything the fleet needs on one machine:
 *   - Kafka: librdkafka's mock cluster (`crmctl embedded-kafka`), a real Kafka
 *     protocol server on 127.0.0.1, with every topic created; or, when
 *     KAFKA_BROKERS is set, that cluster (topics are created through the Admin API);
 *   - PostgreSQL: a private cluster under <dir>/pg (kept between runs), or
 *     DATABASE_URL when set; migrations are applied either way;
 *   - the email sandbox: Debian's aiosmtpd as a real SMTP server with
 *     STARTTLS (a CA made for this directory) and AUTH, keeping every message
 *     in <dir>/maildir;
 *   - the Twilio and Meta sandboxes, with provider storms when
 *     CRM_DEV_STORM_TWILIO / CRM_DEV_STORM_META / CRM_DEV_STORM_SMTP say so,
 *     posting signed status webhooks to the webhook receiver;
 *   - the services: projector, router, the three workers, the webhook
 *     receiver (when it is built), ingest.
 * It writes the endpoints to <dir>/env (shell syntax), the fleet's made-up
 * provider secrets to <dir>/secrets.env (mode 0600), what it started to
 * <dir>/pids, which is all `dev down` stops, and how it started each
 * process to <dir>/run/<name>.spec (mode 0600: it holds secrets), which is
 * what `dev restart` starts again.
 *
 * `dev kill NAME` SIGKILLs one process of the fleet (or stops PostgreSQL in
 * immediate mode, a crash to the server); `dev restart NAME` stops it if it
 * still runs and starts it again the way `dev up` did. The chaos tests
 * (docs/chaos.md) are built on the two.
 *
 * Every child runs in its own session with its output in <dir>/log/<name>.log,
 * so the fleet outlives this command. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "crm/err.h"
#include "crm/pg.h"
#include "crmctl.h"

#ifndef CRM_DEFAULT_SOURCE_DIR
#define CRM_DEFAULT_SOURCE_DIR "."
#endif

#define DEV_MAX_PROCS 16
#define DEV_DIR_MAX 1024
#define DEV_SPEC_MAX_ARGS 48
#define DEV_SPEC_LINE_MAX 4096
#define DEV_PG_BIN "/usr/lib/postgresql/15/bin"

typedef struct dev_proc {
    char name[32];
    pid_t pid;
} dev_proc_t;

/* Everything one `dev` invocation knows; lives on main's stack. */
typedef struct dev_ctx {
    /* Directory names are capped well below PATH_MAX so every path built
     * from them fits its buffer; dev_init refuses longer ones. */
    char source_dir[DEV_DIR_MAX]; /* the checkout: templates, config, migrations, tools */
    char bin_dir[DEV_DIR_MAX];    /* the build tree crmctl runs from */
    char dir[DEV_DIR_MAX];        /* state directory */
    int port_base;
    int ingest_port, router_port, email_port, projector_port, sms_port, whatsapp_port, webhook_port;
    int pg_port, smtp_port, twilio_port, meta_port;
    char twilio_sid[35];         /* AC + 32 hex, made up for the sandbox */
    char twilio_token[33];
    char meta_token[33];
    char meta_app_secret[33];
    char wa_verify_token[33];
    int has_receiver;            /* crm-webhook-receiver is built */
    char kafka_control[128];     /* the embedded Kafka's fault-injection URL; "" with an external one */
    char brokers[1024];
    char database_url[1024];
    char smtp_password[33];
    int external_kafka, external_pg;
    dev_proc_t procs[DEV_MAX_PROCS];
    int nprocs;
} dev_ctx_t;

static void dev_path(const dev_ctx_t *d, char *out, size_t outlen, const char *rel)
{
    snprintf(out, outlen, "%s/%s", d->dir, rel);
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) != 0 && errno != EEXIST)
            return CMN_ERR_IO;
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return CMN_ERR_IO;
    return 0;
}

/* Runs argv to completion with output appended to log_path (or inherited when
 * NULL). Returns the exit code, or -1 when it could not run. */
static int run_cmd(char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (log_path) {
            int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
                close(fd);
            }
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Writes <dir>/run/<name>.spec: how the process was started, so `dev
 * restart` can start it again. Lines: "ready http|tcp|none PORT", then
 * "arg VALUE" per argv entry and "env NAME=VALUE" per override. Mode 0600:
 * the overrides carry the fleet's secrets. */
static int write_spec(const dev_ctx_t *d, const char *name, const char *ready, int port, char *const argv[],
                      char *const env[])
{
    char dir[PATH_MAX], path[PATH_MAX + 64], tmp[PATH_MAX + 80];
    dev_path(d, dir, sizeof(dir), "run");
    if (mkdir_p(dir, 0700) != 0)
        return CMN_ERR_IO;
    snprintf(path, sizeof(path), "%s/%s.spec", dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return CMN_ERR_IO;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return CMN_ERR_IO;
    }
    int rc = 0;
    fprintf(f, "ready %s %d\n", ready, port);
    for (size_t i = 0; argv[i] && rc == 0; i++) {
        /* A newline would split the entry on reading; none of ours has one. */
        if (strchr(argv[i], '\n') != NULL)
            rc = CMN_ERR_INVALID;
        else
            fprintf(f, "arg %s\n", argv[i]);
    }
    for (size_t i = 0; env && env[i] && rc == 0; i++) {
        if (strchr(env[i], '\n') != NULL)
            rc = CMN_ERR_INVALID;
        else
            fprintf(f, "env %s\n", env[i]);
    }
    if (fclose(f) != 0 && rc == 0)
        rc = CMN_ERR_IO;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = CMN_ERR_IO;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

/* A spec read back; strings are owned and freed by spec_free. */
typedef struct dev_spec {
    char ready[8];
    int port;
    char *argv[DEV_SPEC_MAX_ARGS + 1];
    char *env[DEV_SPEC_MAX_ARGS + 1];
    int nargv, nenv;
} dev_spec_t;

static void spec_free(dev_spec_t *sp)
{
    for (int i = 0; i < sp->nargv; i++)
        free(sp->argv[i]);
    for (int i = 0; i < sp->nenv; i++)
        free(sp->env[i]);
    memset(sp, 0, sizeof(*sp));
}

static int read_spec(const dev_ctx_t *d, const char *name, dev_spec_t *sp)
{
    char path[PATH_MAX + 64], rel[96];
    memset(sp, 0, sizeof(*sp));
    snprintf(rel, sizeof(rel), "run/%s.spec", name);
    dev_path(d, path, sizeof(path), rel);
    FILE *f = fopen(path, "r");
    if (!f)
        return CMN_ERR_NOTFOUND;
    char *line = malloc(DEV_SPEC_LINE_MAX);
    int rc = line ? 0 : CMN_ERR_NOMEM;
    while (rc == 0 && fgets(line, DEV_SPEC_LINE_MAX, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "ready ", 6) == 0) {
            if (sscanf(line + 6, "%7s %d", sp->ready, &sp->port) != 2)
                rc = CMN_ERR_PARSE;
        } else if (strncmp(line, "arg ", 4) == 0 && sp->nargv < DEV_SPEC_MAX_ARGS) {
            sp->argv[sp->nargv] = strdup(line + 4);
            rc = sp->argv[sp->nargv++] ? 0 : CMN_ERR_NOMEM;
        } else if (strncmp(line, "env ", 4) == 0 && sp->nenv < DEV_SPEC_MAX_ARGS) {
            sp->env[sp->nenv] = strdup(line + 4);
            rc = sp->env[sp->nenv++] ? 0 : CMN_ERR_NOMEM;
        } else {
            rc = CMN_ERR_PARSE;
        }
    }
    free(line);
    fclose(f);
    if (rc == 0 && (sp->nargv == 0 || sp->ready[0] == '\0'))
        rc = CMN_ERR_PARSE;
    if (rc != 0)
        spec_free(sp);
    return rc;
}

/* Starts a long-running child in its own session with env overrides
 * ("NAME=value" strings, NULL-terminated), records how in its spec (ready
 * says how to tell it is up: "http" or "tcp" on port, or "none"), and
 * records it in d->procs, replacing an earlier entry of the same name. */
static int spawn_daemon(dev_ctx_t *d, const char *name, char *const argv[], char *const env[], const char *ready,
                        int port)
{
    char log_path[PATH_MAX + 64];
    snprintf(log_path, sizeof(log_path), "%s/log/%s.log", d->dir, name);
    int slot = d->nprocs;
    for (int i = 0; i < d->nprocs; i++) {
        if (strcmp(d->procs[i].name, name) == 0)
            slot = i;
    }
    if (slot >= DEV_MAX_PROCS)
        return CMN_ERR_OVERFLOW;
    if (write_spec(d, name, ready, port, argv, env) != 0) {
        fprintf(stderr, "crmctl dev: cannot write %s/run/%s.spec\n", d->dir, name);
        return CMN_ERR_IO;
    }
    pid_t pid = fork();
    if (pid < 0)
        return CMN_ERR_IO;
    if (pid == 0) {
        setsid();
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        for (size_t i = 0; env && env[i]; i++)
            putenv(env[i]);
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    snprintf(d->procs[slot].name, sizeof(d->procs[slot].name), "%s", name);
    d->procs[slot].pid = pid;
    if (slot == d->nprocs)
        d->nprocs++;
    return 0;
}

static int pid_alive(pid_t pid)
{
    /* Reap it if it is our exited child, so a zombie does not look alive. */
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid)
        return 0;
    return kill(pid, 0) == 0;
}

static int write_pids(const dev_ctx_t *d)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    dev_path(d, path, sizeof(path), "pids");
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return CMN_ERR_IO;
    for (int i = 0; i < d->nprocs; i++)
        fprintf(f, "%s %d\n", d->procs[i].name, (int)d->procs[i].pid);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return CMN_ERR_IO;
    return 0;
}

static int read_pids(dev_ctx_t *d)
{
    char path[PATH_MAX];
    dev_path(d, path, sizeof(path), "pids");
    FILE *f = fopen(path, "r");
    if (!f)
        return CMN_ERR_NOTFOUND;
    d->nprocs = 0;
    char name[32];
    int pid;
    while (d->nprocs < DEV_MAX_PROCS && fscanf(f, "%31s %d", name, &pid) == 2) {
        snprintf(d->procs[d->nprocs].name, sizeof(d->procs[d->nprocs].name), "%s", name);
        d->procs[d->nprocs].pid = pid;
        d->nprocs++;
    }
    fclose(f);
    return 0;
}

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

/* Polls http://127.0.0.1:port/readyz until 200, the process exits, or timeout. */
static int wait_ready(dev_ctx_t *d, const dev_proc_t *p, int port, int timeout_ms)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", port);
    CURL *curl = curl_easy_init();
    if (!curl)
        return CMN_ERR_NOMEM;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 1000L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
    int rc = CMN_ERR_TIMEOUT;
    for (int waited = 0; waited < timeout_ms; waited += 200) {
        if (!pid_alive(p->pid)) {
            fprintf(stderr, "crmctl dev: %s exited during start; see %s/log/%s.log\n", p->name, d->dir,
                    p->name);
            rc = CMN_ERR_IO;
            break;
        }
        long code = 0;
        if (curl_easy_perform(curl) == CURLE_OK &&
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200) {
            rc = 0;
            break;
        }
        usleep(200 * 1000);
    }
    curl_easy_cleanup(curl);
    if (rc == CMN_ERR_TIMEOUT)
        fprintf(stderr, "crmctl dev: %s not ready after %d ms; see %s/log/%s.log\n", p->name, timeout_ms,
                d->dir, p->name);
    return rc;
}

/* Waits until a file exists and is non-empty, reading it into out. */
static int wait_file(const char *path, char *out, size_t outlen, pid_t owner, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(out, 1, outlen - 1, f);
            fclose(f);
            out[n] = '\0';
            while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
                out[--n] = '\0';
            if (n > 0)
                return 0;
        }
        if (owner > 0 && !pid_alive(owner))
            return CMN_ERR_IO;
        usleep(100 * 1000);
    }
    return CMN_ERR_TIMEOUT;
}

static int wait_tcp(int port, pid_t owner, int timeout_ms)
{
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "127.0.0.1:%d", port);
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        CURL *curl = curl_easy_init();
        if (!curl)
            return CMN_ERR_NOMEM;
        char url[96];
        snprintf(url, sizeof(url), "telnet://%s", cmd);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_CONNECT_ONLY, 1L);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 500L);
        CURLcode rc = curl_easy_perform(curl);
        curl_easy_cleanup(curl);
        if (rc == CURLE_OK)
            return 0;
        if (owner > 0 && !pid_alive(owner))
            return CMN_ERR_IO;
        usleep(100 * 1000);
    }
    return CMN_ERR_TIMEOUT;
}

static int random_hex(char *out, size_t nbytes)
{
    unsigned char raw[32];
    if (nbytes > sizeof(raw) || RAND_bytes(raw, (int)nbytes) != 1)
        return CMN_ERR_IO;
    for (size_t i = 0; i < nbytes; i++)
        sprintf(out + 2 * i, "%02x", raw[i]);
    return 0;
}

/* The private PostgreSQL: postgres refuses to run as root, so as root every
 * server command goes through runuser to the postgres account, which owns the
 * data directory. */
static int pg_run(const dev_ctx_t *d, char **argv_tail, const char *log_path)
{
    char *argv[32];
    int n = 0;
    if (geteuid() == 0) {
        argv[n++] = "runuser";
        argv[n++] = "-u";
        argv[n++] = "postgres";
        argv[n++] = "--";
    }
    for (int i = 0; argv_tail[i] && n < 31; i++)
        argv[n++] = argv_tail[i];
    argv[n] = NULL;
    (void)d;
    return run_cmd(argv, log_path);
}

static int pg_start(dev_ctx_t *d)
{
    char data[PATH_MAX], run[PATH_MAX], log_path[PATH_MAX], pgdir[PATH_MAX], marker[PATH_MAX + 16];
    dev_path(d, pgdir, sizeof(pgdir), "pg");
    dev_path(d, data, sizeof(data), "pg/data");
    dev_path(d, run, sizeof(run), "pg/run");
    dev_path(d, log_path, sizeof(log_path), "log/postgres.log");
    if (mkdir_p(run, 0755) != 0)
        return CMN_ERR_IO;
    if (geteuid() == 0) {
        char *chown_argv[] = {"chown", "-R", "postgres:postgres", pgdir, NULL};
        if (run_cmd(chown_argv, NULL) != 0)
            return CMN_ERR_IO;
        /* postgres must be able to append to its log. */
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0)
            close(fd);
        char *chown_log[] = {"chown", "postgres:postgres", log_path, NULL};
        run_cmd(chown_log, NULL);
    }
    snprintf(marker, sizeof(marker), "%s/PG_VERSION", data);
    if (access(marker, F_OK) != 0) {
        char *initdb[] = {DEV_PG_BIN "/initdb", "-D", data, "-U", "crm", "--auth=trust", "-E", "UTF8",
                          "--locale=C", NULL};
        if (pg_run(d, initdb, log_path) != 0) {
            fprintf(stderr, "crmctl dev: initdb failed; see %s\n", log_path);
            return CMN_ERR_IO;
        }
    }
    char opts[PATH_MAX + 256];
    snprintf(opts, sizeof(opts), "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200", d->pg_port,
             run);
    char *start[] = {DEV_PG_BIN "/pg_ctl", "-D", data, "-l", log_path, "-o", opts, "-w", "-t", "60", "start", NULL};
    if (pg_run(d, start, log_path) != 0) {
        fprintf(stderr, "crmctl dev: PostgreSQL did not start; see %s\n", log_path);
        return CMN_ERR_IO;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", d->pg_port);
    char *createdb[] = {"createdb", "-h", "127.0.0.1", "-p", port, "-U", "crm", "crm", NULL};
    /* createdb fails harmlessly when the database is already there. */
    run_cmd(createdb, log_path);
    snprintf(d->database_url, sizeof(d->database_url), "postgresql://crm@127.0.0.1:%d/crm", d->pg_port);
    /* Not a child of ours (pg_ctl daemonises it), but `dev kill` and `dev
     * restart` need its port and directory. */
    char *spec_argv[] = {DEV_PG_BIN "/postgres", "-D", data, NULL};
    if (write_spec(d, "postgres", "tcp", d->pg_port, spec_argv, NULL) != 0)
        return CMN_ERR_IO;
    return 0;
}

static void pg_stop(const dev_ctx_t *d)
{
    char data[PATH_MAX], log_path[PATH_MAX], marker[PATH_MAX + 16];
    dev_path(d, data, sizeof(data), "pg/data");
    dev_path(d, log_path, sizeof(log_path), "log/postgres.log");
    snprintf(marker, sizeof(marker), "%s/postmaster.pid", data);
    if (access(marker, F_OK) != 0)
        return;
    char *stop[] = {DEV_PG_BIN "/pg_ctl", "-D", data, "-m", "fast", "-w", "stop", NULL};
    pg_run(d, stop, log_path);
}

static int kafka_start(dev_ctx_t *d)
{
    char crmctl[PATH_MAX + 32], bootstrap[PATH_MAX];
    snprintf(crmctl, sizeof(crmctl), "%s/tools/crmctl/crmctl", d->bin_dir);
    dev_path(d, bootstrap, sizeof(bootstrap), "kafka.bootstrap");
    unlink(bootstrap);
    char control[PATH_MAX];
    dev_path(d, control, sizeof(control), "kafka.control");
    unlink(control);
    /* The fault-injection channel listens on a free loopback port; the
     * chaos tests drive it (docs/chaos.md). */
    char *argv[] = {crmctl, "embedded-kafka", "--bootstrap-file", bootstrap, "--control-port", "0",
                    "--control-file", control, NULL};
    int rc = spawn_daemon(d, "kafka", argv, NULL, "none", 0);
    if (rc != 0)
        return rc;
    rc = wait_file(bootstrap, d->brokers, sizeof(d->brokers), d->procs[d->nprocs - 1].pid, 30000);
    if (rc == 0)
        rc = wait_file(control, d->kafka_control, sizeof(d->kafka_control), d->procs[d->nprocs - 1].pid, 10000);
    if (rc != 0)
        fprintf(stderr, "crmctl dev: embedded Kafka did not start; see %s/log/kafka.log\n", d->dir);
    return rc;
}

static int smtp_start(dev_ctx_t *d)
{
    char smtpdir[PATH_MAX], maildir[PATH_MAX], cert[PATH_MAX + 32], key[PATH_MAX + 32], ca[PATH_MAX + 32];
    char script[PATH_MAX + 64], mkca[PATH_MAX + 64], port[16];
    dev_path(d, smtpdir, sizeof(smtpdir), "smtp");
    dev_path(d, maildir, sizeof(maildir), "maildir");
    if (mkdir_p(smtpdir, 0755) != 0 || mkdir_p(maildir, 0755) != 0)
        return CMN_ERR_IO;
    snprintf(cert, sizeof(cert), "%s/server.pem", smtpdir);
    snprintf(key, sizeof(key), "%s/server.key", smtpdir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", smtpdir);
    snprintf(script, sizeof(script), "%s/tools/smtp-sandbox/smtp_sandbox.py", d->source_dir);
    snprintf(mkca, sizeof(mkca), "%s/tools/smtp-sandbox/make_ca.sh", d->source_dir);
    if (access(cert, F_OK) != 0) {
        char log_path[PATH_MAX];
        dev_path(d, log_path, sizeof(log_path), "log/smtp-ca.log");
        char *argv_ca[] = {"sh", mkca, smtpdir, NULL};
        if (run_cmd(argv_ca, log_path) != 0) {
            fprintf(stderr, "crmctl dev: could not make the sandbox CA; see %s\n", log_path);
            return CMN_ERR_IO;
        }
    }
    if (random_hex(d->smtp_password, 16) != 0)
        return CMN_ERR_IO;
    snprintf(port, sizeof(port), "%d", d->smtp_port);
    /* Recipients like fail550-x@... are refused with that code, so the demo
     * and the tests can show real SMTP failures; the password travels in the
     * environment, not the process list. */
    const char *sink = getenv("CRM_DEV_SMTP_SINK");
    const char *storm = getenv("CRM_DEV_STORM_SMTP");
    const char *seed = getenv("CRM_DEV_STORM_SEED");
    char accepted[PATH_MAX + 32];
    snprintf(accepted, sizeof(accepted), "%s/accepted.log", smtpdir);
    /* One log per fleet: the chaos tests count what this run accepted. */
    unlink(accepted);
    char *argv[24] = {"/usr/bin/python3", script, "--host", "127.0.0.1", "--port", port, "--maildir", maildir,
                      "--tls-cert", cert, "--tls-key", key, "--auth-user", "crm", "--fail-rcpt-prefix", "fail",
                      "--accepted-log", accepted, NULL};
    int n = 18;
    if (sink && strcmp(sink, "1") == 0)
        argv[n++] = "--sink";
    if (storm && *storm) {
        argv[n++] = "--storm";
        argv[n++] = (char *)storm;
    }
    if (seed && *seed) {
        argv[n++] = "--storm-seed";
        argv[n++] = (char *)seed;
    }
    argv[n] = NULL;
    char pass_env[64];
    snprintf(pass_env, sizeof(pass_env), "SMTP_SANDBOX_PASSWORD=%s", d->smtp_password);
    char *env[] = {pass_env, NULL};
    int rc = spawn_daemon(d, "smtp", argv, env, "tcp", d->smtp_port);
    if (rc != 0)
        return rc;
    rc = wait_tcp(d->smtp_port, d->procs[d->nprocs - 1].pid, 20000);
    if (rc != 0)
        fprintf(stderr, "crmctl dev: SMTP sandbox did not start; see %s/log/smtp.log\n", d->dir);
    return rc;
}

/* Appends the storm options of a sandbox (--storm from the variable named
 * storm_var, and the shared CRM_DEV_STORM_SEED, _RETRY_AFTER_S and
 * _TIMEOUT_MS) to argv at *n; the values stay in the environment. */
static void storm_args(char **argv, int *n, const char *storm_var)
{
    static const struct {
        const char *var, *flag;
    } OPTS[] = {{"CRM_DEV_STORM_SEED", "--storm-seed"},
                {"CRM_DEV_STORM_RETRY_AFTER_S", "--storm-retry-after-s"},
                {"CRM_DEV_STORM_TIMEOUT_MS", "--storm-timeout-ms"}};
    const char *storm = getenv(storm_var);
    if (!storm || !*storm)
        return;
    argv[(*n)++] = "--storm";
    argv[(*n)++] = (char *)storm;
    for (size_t i = 0; i < sizeof(OPTS) / sizeof(OPTS[0]); i++) {
        const char *v = getenv(OPTS[i].var);
        if (v && *v) {
            argv[(*n)++] = (char *)OPTS[i].flag;
            argv[(*n)++] = (char *)v;
        }
    }
}

/* The Twilio sandbox: checks every Messages API request against Twilio's
 * official OpenAPI spec (vendored under tools/sandbox-twilio/oracles) and
 * answers like the API, with scripted failures keyed by the recipient. */
static int twilio_sandbox_start(dev_ctx_t *d)
{
    char bin[DEV_DIR_MAX + 64], spec[DEV_DIR_MAX + 96], port[16];
    snprintf(bin, sizeof(bin), "%s/tools/sandbox-twilio/crm-sandbox-twilio", d->bin_dir);
    snprintf(spec, sizeof(spec), "%s/tools/sandbox-twilio/oracles/twilio_api_v2010.json", d->source_dir);
    snprintf(port, sizeof(port), "%d", d->twilio_port);
    char hex[33];
    if (random_hex(hex, 16) != 0 || random_hex(d->twilio_token, 16) != 0)
        return CMN_ERR_IO;
    snprintf(d->twilio_sid, sizeof(d->twilio_sid), "AC%s", hex);
    char token_env[64];
    snprintf(token_env, sizeof(token_env), "TWILIO_SANDBOX_AUTH_TOKEN=%s", d->twilio_token);
    char *env[] = {token_env, NULL};
    char *argv[24] = {bin, "--host", "127.0.0.1", "--port", port, "--account-sid", d->twilio_sid, "--spec", spec,
                      "--callbacks", NULL};
    int n = 10;
    storm_args(argv, &n, "CRM_DEV_STORM_TWILIO");
    argv[n] = NULL;
    int rc = spawn_daemon(d, "sandbox-twilio", argv, env, "http", d->twilio_port);
    if (rc != 0)
        return rc;
    return wait_ready(d, &d->procs[d->nprocs - 1], d->twilio_port, 30000);
}

/* Reads <dir>/<file>, creating it with a random 64-hex-character key on
 * first use, and writes "<var>=<key>" into out. */
static int dev_persistent_key(const dev_ctx_t *d, const char *file, const char *var, char *out, size_t outlen)
{
    char path[DEV_DIR_MAX + 32], key[80] = "";
    snprintf(path, sizeof(path), "%s/%s", d->dir, file);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(key, sizeof(key), f))
            key[0] = '\0';
        fclose(f);
        key[strcspn(key, "\n")] = '\0';
    }
    if (strlen(key) < 32) {
        if (random_hex(key, 32) != 0)
            return CMN_ERR_IO;
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            return CMN_ERR_IO;
        ssize_t w = write(fd, key, strlen(key));
        close(fd);
        if (w != (ssize_t)strlen(key))
            return CMN_ERR_IO;
    }
    snprintf(out, outlen, "%s=%s", var, key);
    return 0;
}

/* The data key keys the phone-number hashes of the conversations table and
 * the tracking key signs the links in sent emails, so both stay the same
 * across dev up runs. */
static int dev_data_key(const dev_ctx_t *d, char *out, size_t outlen)
{
    return dev_persistent_key(d, "data.key", "CRM_DATA_KEY", out, outlen);
}

/* The Meta sandbox: checks every Cloud API send against Meta's official
 * examples (vendored under tools/sandbox-meta/oracles) and answers like the
 * Graph API, with scripted failures keyed by the recipient. */
static int meta_sandbox_start(dev_ctx_t *d)
{
    char bin[DEV_DIR_MAX + 64], examples[DEV_DIR_MAX + 96], port[16];
    snprintf(bin, sizeof(bin), "%s/tools/sandbox-meta/crm-sandbox-meta", d->bin_dir);
    snprintf(examples, sizeof(examples), "%s/tools/sandbox-meta/oracles/cloud_api_examples.json", d->source_dir);
    snprintf(port, sizeof(port), "%d", d->meta_port);
    if (random_hex(d->meta_token, 16) != 0 || random_hex(d->meta_app_secret, 16) != 0 ||
        random_hex(d->wa_verify_token, 16) != 0)
        return CMN_ERR_IO;
    char token_env[64], secret_env[64], hook[96];
    snprintf(token_env, sizeof(token_env), "META_SANDBOX_ACCESS_TOKEN=%s", d->meta_token);
    snprintf(secret_env, sizeof(secret_env), "META_SANDBOX_APP_SECRET=%s", d->meta_app_secret);
    /* Status webhooks go to the receiver's port even before it is built:
     * a refused post is logged by the sandbox and harms nothing. */
    snprintf(hook, sizeof(hook), "http://127.0.0.1:%d/meta/webhook", d->webhook_port);
    char *env[] = {token_env, secret_env, NULL};
    char *argv[28] = {bin, "--host", "127.0.0.1", "--port", port, "--examples", examples, "--api-version", "v23.0",
                      "--phone-number-id", "106540352242922", "--webhook-url", hook, NULL};
    int n = 13;
    storm_args(argv, &n, "CRM_DEV_STORM_META");
    argv[n] = NULL;
    int rc = spawn_daemon(d, "sandbox-meta", argv, env, "http", d->meta_port);
    if (rc != 0)
        return rc;
    return wait_ready(d, &d->procs[d->nprocs - 1], d->meta_port, 30000);
}

static int run_crmctl(const dev_ctx_t *d, const char *log_name, char *const args[])
{
    char crmctl[PATH_MAX + 32], log_path[PATH_MAX];
    snprintf(crmctl, sizeof(crmctl), "%s/tools/crmctl/crmctl", d->bin_dir);
    snprintf(log_path, sizeof(log_path), "%s/log/%s.log", d->dir, log_name);
    char *argv[16];
    int n = 0;
    argv[n++] = crmctl;
    for (int i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return run_cmd(argv, log_path);
}

/* Starts one service binary with the fleet's environment plus extra. */
static int service_start(dev_ctx_t *d, const char *name, const char *subdir, int port, char *const extra[])
{
    static const int max_env = 40;
    char bin[PATH_MAX + 64];
    snprintf(bin, sizeof(bin), "%s/services/%s/crm-%s", d->bin_dir, subdir, name);
    char kv[40][PATH_MAX + 64];
    char *env[41];
    int n = 0;
    snprintf(kv[n++], sizeof(kv[0]), "KAFKA_BROKERS=%s", d->brokers);
    snprintf(kv[n++], sizeof(kv[0]), "DATABASE_URL=%s", d->database_url);
    snprintf(kv[n++], sizeof(kv[0]), "HTTP_PORT=%d", port);
    snprintf(kv[n++], sizeof(kv[0]), "HTTP_BIND=127.0.0.1");
    /* The mock cluster waits session.timeout.ms before rebalancing after a
     * member vanishes; a short session lets a killed service's partitions
     * move on within seconds in development. */
    snprintf(kv[n++], sizeof(kv[0]), "KAFKA_SESSION_TIMEOUT_MS=%s",
             getenv("KAFKA_SESSION_TIMEOUT_MS") ? getenv("KAFKA_SESSION_TIMEOUT_MS") : "10000");
    for (int i = 0; extra && extra[i] && n < max_env; i++)
        snprintf(kv[n++], sizeof(kv[0]), "%s", extra[i]);
    for (int i = 0; i < n; i++)
        env[i] = kv[i];
    env[n] = NULL;
    char *argv[] = {bin, NULL};
    /* putenv keeps pointers, and the child gets copies of this stack at fork. */
    int rc = spawn_daemon(d, name, argv, env, "http", port);
    if (rc != 0)
        return rc;
    return wait_ready(d, &d->procs[d->nprocs - 1], port, 60000);
}

static int write_env(const dev_ctx_t *d)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    dev_path(d, path, sizeof(path), "env");
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return CMN_ERR_IO;
    fprintf(f, "# Written by `crmctl dev up`; source it to talk to the embedded fleet.\n");
    fprintf(f, "KAFKA_BROKERS='%s'\n", d->brokers);
    fprintf(f, "DATABASE_URL='%s'\n", d->database_url);
    fprintf(f, "CRM_INGEST_URL='http://127.0.0.1:%d'\n", d->ingest_port);
    fprintf(f, "CRM_MAILDIR='%s/maildir'\n", d->dir);
    fprintf(f, "CRM_LOG_DIR='%s/log'\n", d->dir);
    fprintf(f, "CRM_SMTP_PORT='%d'\n", d->smtp_port);
    fprintf(f, "CRM_ROUTER_URL='http://127.0.0.1:%d'\n", d->router_port);
    fprintf(f, "CRM_EMAIL_WORKER_URL='http://127.0.0.1:%d'\n", d->email_port);
    fprintf(f, "CRM_PROJECTOR_URL='http://127.0.0.1:%d'\n", d->projector_port);
    fprintf(f, "CRM_SMS_WORKER_URL='http://127.0.0.1:%d'\n", d->sms_port);
    fprintf(f, "CRM_TWILIO_SANDBOX_URL='http://127.0.0.1:%d'\n", d->twilio_port);
    fprintf(f, "CRM_WHATSAPP_WORKER_URL='http://127.0.0.1:%d'\n", d->whatsapp_port);
    fprintf(f, "CRM_META_SANDBOX_URL='http://127.0.0.1:%d'\n", d->meta_port);
    fprintf(f, "CRM_EXTERNAL_KAFKA='%d'\n", d->external_kafka);
    fprintf(f, "CRM_WEBHOOK_URL='http://127.0.0.1:%d'\n", d->webhook_port);
    fprintf(f, "CRM_WEBHOOK_RECEIVER='%d'\n", d->has_receiver);
    fprintf(f, "CRM_SMTP_ACCEPTED_LOG='%s/smtp/accepted.log'\n", d->dir);
    fprintf(f, "CRM_DEV_SECRETS='%s/secrets.env'\n", d->dir);
    if (d->kafka_control[0] != '\0')
        fprintf(f, "CRM_DEV_KAFKA_CONTROL='%s'\n", d->kafka_control);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return CMN_ERR_IO;
    return 0;
}

/* <dir>/secrets.env, mode 0600: the made-up provider credentials of this
 * fleet, for tests and tools that must sign webhooks or call a sandbox. */
static int write_secrets(const dev_ctx_t *d)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    dev_path(d, path, sizeof(path), "secrets.env");
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return CMN_ERR_IO;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return CMN_ERR_IO;
    }
    fprintf(f, "# Written by `crmctl dev up`: the sandboxes' made-up credentials (never real ones).\n");
    fprintf(f, "TWILIO_ACCOUNT_SID='%s'\n", d->twilio_sid);
    fprintf(f, "TWILIO_AUTH_TOKEN='%s'\n", d->twilio_token);
    fprintf(f, "WHATSAPP_ACCESS_TOKEN='%s'\n", d->meta_token);
    fprintf(f, "WHATSAPP_APP_SECRET='%s'\n", d->meta_app_secret);
    fprintf(f, "WHATSAPP_WEBHOOK_VERIFY_TOKEN='%s'\n", d->wa_verify_token);
    fprintf(f, "SMTP_PASSWORD='%s'\n", d->smtp_password);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return CMN_ERR_IO;
    return 0;
}

static void stop_procs(dev_ctx_t *d)
{
    /* Reverse start order: intake first, Kafka last, so in-flight work drains. */
    for (int i = d->nprocs - 1; i >= 0; i--) {
        pid_t pid = d->procs[i].pid;
        if (pid <= 0 || !pid_alive(pid))
            continue;
        kill(pid, SIGTERM);
        int waited = 0;
        while (pid_alive(pid) && waited < 15000) {
            usleep(100 * 1000);
            waited += 100;
        }
        if (pid_alive(pid)) {
            fprintf(stderr, "crmctl dev: %s (pid %d) did not stop in 15 s; killing it\n", d->procs[i].name,
                    (int)pid);
            kill(pid, SIGKILL);
        }
    }
}

static int dev_init(dev_ctx_t *d)
{
    memset(d, 0, sizeof(*d));
    const char *src = getenv("CRM_SOURCE_DIR");
    const char *source = src && *src ? src : CRM_DEFAULT_SOURCE_DIR;
    const char *dir = getenv("CRM_DEV_DIR");
    if (strlen(source) >= DEV_DIR_MAX - 64 || (dir && strlen(dir) >= DEV_DIR_MAX - 64)) {
        fprintf(stderr, "crmctl dev: CRM_SOURCE_DIR and CRM_DEV_DIR must be shorter than %d bytes\n",
                DEV_DIR_MAX - 64);
        return CMN_ERR_CONFIG;
    }
    snprintf(d->source_dir, sizeof(d->source_dir), "%s", source);
    char exe[DEV_DIR_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return CMN_ERR_IO;
    exe[n] = '\0';
    /* crmctl lives at <build>/tools/crmctl/crmctl. */
    for (int cut = 0; cut < 3; cut++) {
        char *slash = strrchr(exe, '/');
        if (!slash)
            return CMN_ERR_IO;
        *slash = '\0';
    }
    snprintf(d->bin_dir, sizeof(d->bin_dir), "%s", exe);
    if (dir && *dir)
        snprintf(d->dir, sizeof(d->dir), "%s", dir);
    else
        snprintf(d->dir, sizeof(d->dir), "%s/var/dev", source);
    const char *base = getenv("CRM_DEV_PORT_BASE");
    d->port_base = base && *base ? atoi(base) : 18080;
    if (d->port_base < 1024 || d->port_base > 65000) {
        fprintf(stderr, "crmctl dev: CRM_DEV_PORT_BASE must be between 1024 and 65000\n");
        return CMN_ERR_CONFIG;
    }
    d->ingest_port = d->port_base;
    d->router_port = d->port_base + 1;
    d->email_port = d->port_base + 2;
    d->projector_port = d->port_base + 3;
    d->sms_port = d->port_base + 4;
    d->whatsapp_port = d->port_base + 5;
    d->webhook_port = d->port_base + 6;
    d->pg_port = d->port_base + 10;
    d->smtp_port = d->port_base + 11;
    d->twilio_port = d->port_base + 12;
    d->meta_port = d->port_base + 13;
    return 0;
}

/* The embedded Kafka starts empty every time, but PostgreSQL is kept
 * between runs, and the projector stores its Kafka positions there
 * (consumer_offsets). Positions into the previous run's logs would make it
 * skip the new log's first records (a stored offset that happens to exist
 * in the new log is taken at its word), so they are forgotten. */
static int forget_kafka_offsets(const dev_ctx_t *d)
{
    char err[256];
    PGconn *conn = cmn_pg_connect(d->database_url, 10000, err, sizeof(err));
    if (conn == NULL) {
        fprintf(stderr, "crmctl dev: PostgreSQL: %s\n", err);
        return CMN_ERR_DB;
    }
    int rc = cmn_pg_exec(conn, "DELETE FROM consumer_offsets", err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "crmctl dev: cannot reset consumer_offsets: %s\n", err);
    PQfinish(conn);
    return rc;
}

static int dev_up(dev_ctx_t *d)
{
    char path[PATH_MAX];
    dev_path(d, path, sizeof(path), "pids");
    if (access(path, F_OK) == 0) {
        dev_ctx_t old = *d;
        if (read_pids(&old) == 0) {
            for (int i = 0; i < old.nprocs; i++) {
                if (pid_alive(old.procs[i].pid)) {
                    fprintf(stderr, "crmctl dev: already up (%s pid %d); run `crmctl dev down` first\n",
                            old.procs[i].name, (int)old.procs[i].pid);
                    return 1;
                }
            }
        }
    }
    dev_path(d, path, sizeof(path), "log");
    if (mkdir_p(path, 0755) != 0) {
        fprintf(stderr, "crmctl dev: cannot create %s: %s\n", path, strerror(errno));
        return 1;
    }
    int rc = 0;
    const char *ext_kafka = getenv("KAFKA_BROKERS");
    const char *ext_pg = getenv("DATABASE_URL");
    printf("crmctl dev: starting the embedded fleet in %s\n", d->dir);
    fflush(stdout);

    if (ext_kafka && *ext_kafka) {
        d->external_kafka = 1;
        snprintf(d->brokers, sizeof(d->brokers), "%s", ext_kafka);
        char *args[] = {"topics", "create", NULL};
        if (run_crmctl(d, "topics", args) != 0) {
            fprintf(stderr, "crmctl dev: creating topics on %s failed; see %s/log/topics.log\n", d->brokers,
                    d->dir);
            rc = 1;
            goto out;
        }
    } else if (kafka_start(d) != 0) {
        rc = 1;
        goto out;
    }
    printf("  kafka       %s%s\n", d->brokers, d->external_kafka ? " (external)" : " (embedded mock cluster)");
    if (d->kafka_control[0] != '\0')
        printf("              fault injection on %s (docs/chaos.md)\n", d->kafka_control);
    fflush(stdout);

    if (ext_pg && *ext_pg) {
        d->external_pg = 1;
        snprintf(d->database_url, sizeof(d->database_url), "%s", ext_pg);
    } else if (pg_start(d) != 0) {
        rc = 1;
        goto out;
    }
    setenv("DATABASE_URL", d->database_url, 1);
    char *migrate[] = {"migrate", NULL};
    if (run_crmctl(d, "migrate", migrate) != 0) {
        fprintf(stderr, "crmctl dev: migrations failed; see %s/log/migrate.log\n", d->dir);
        rc = 1;
        goto out;
    }
    if (!d->external_kafka && forget_kafka_offsets(d) != 0) {
        rc = 1;
        goto out;
    }
    printf("  postgresql  %s\n", d->database_url);
    fflush(stdout);

    if (smtp_start(d) != 0) {
        rc = 1;
        goto out;
    }
    printf("  smtp        127.0.0.1:%d (STARTTLS, AUTH; mail kept in %s/maildir)\n", d->smtp_port, d->dir);
    fflush(stdout);

    char ca[PATH_MAX + 32], smtp_port[32], smtp_pass[64], ca_env[PATH_MAX + 48];
    snprintf(ca, sizeof(ca), "%s/smtp/ca.pem", d->dir);
    snprintf(ca_env, sizeof(ca_env), "SMTP_CA_FILE=%s", ca);
    snprintf(smtp_port, sizeof(smtp_port), "SMTP_PORT=%d", d->smtp_port);
    snprintf(smtp_pass, sizeof(smtp_pass), "SMTP_PASSWORD=%s", d->smtp_password);
    char *email_env[] = {"SMTP_HOST=127.0.0.1", smtp_port, "SMTP_USERNAME=crm", smtp_pass,
                         "SMTP_FROM_EMAIL=notifications@crm.example", "SMTP_FROM_NAME=Acme CRM",
                         "SMTP_USE_TLS=true", ca_env, NULL, NULL, NULL, NULL};
    if (twilio_sandbox_start(d) != 0) {
        rc = 1;
        goto out;
    }
    printf("  twilio      http://127.0.0.1:%d (sandbox checking requests against Twilio's OpenAPI spec)\n",
           d->twilio_port);
    fflush(stdout);
    char twilio_url[64], twilio_sid[64], twilio_token[64];
    snprintf(twilio_url, sizeof(twilio_url), "TWILIO_API_URL=http://127.0.0.1:%d", d->twilio_port);
    snprintf(twilio_sid, sizeof(twilio_sid), "TWILIO_ACCOUNT_SID=%s", d->twilio_sid);
    snprintf(twilio_token, sizeof(twilio_token), "TWILIO_AUTH_TOKEN=%s", d->twilio_token);
    /* The sandbox has no carrier limits; a long code's 1 msg/s would make
     * the demo wait minutes, so development raises it (production keeps 1). */
    /* [6] is the StatusCallback URL, set below. */
    char *sms_env[] = {twilio_url, twilio_sid, twilio_token, "TWILIO_PHONE_NUMBER=+14155550100",
                       "SMS_RATE_PER_SECOND=50", "SMS_RATE_BURST=10", NULL, NULL};
    if (meta_sandbox_start(d) != 0) {
        rc = 1;
        goto out;
    }
    printf("  meta        http://127.0.0.1:%d (sandbox checking sends against Meta's official examples)\n",
           d->meta_port);
    fflush(stdout);
    char meta_url[64], meta_token[64], data_key[80];
    snprintf(meta_url, sizeof(meta_url), "WHATSAPP_API_URL=http://127.0.0.1:%d", d->meta_port);
    snprintf(meta_token, sizeof(meta_token), "WHATSAPP_ACCESS_TOKEN=%s", d->meta_token);
    /* A key made for this directory: it keys the phone-number hashes of the
     * conversations table, so it must stay the same across dev up runs. */
    if (dev_data_key(d, data_key, sizeof(data_key)) != 0) {
        rc = 1;
        goto out;
    }
    char tracking_key[96];
    if (dev_persistent_key(d, "tracking.key", "CRM_TRACKING_KEY", tracking_key, sizeof(tracking_key)) != 0) {
        rc = 1;
        goto out;
    }
    /* The status callbacks point at the webhook receiver's port whether or
     * not it is built yet: the sandboxes then log a refused post, and the
     * URL still carries the communication id they count duplicates by. */
    char sms_callback[128], wa_callback[128];
    snprintf(sms_callback, sizeof(sms_callback), "SMS_STATUS_CALLBACK_URL=http://127.0.0.1:%d/twilio/status",
             d->webhook_port);
    snprintf(wa_callback, sizeof(wa_callback), "TWILIO_STATUS_CALLBACK_URL=http://127.0.0.1:%d/twilio/status",
             d->webhook_port);
    sms_env[6] = sms_callback;
    char *wa_env[] = {"WHATSAPP_PROVIDER=meta", meta_url, "WHATSAPP_API_VERSION=v23.0",
                      "WHATSAPP_PHONE_NUMBER_ID=106540352242922", meta_token, data_key, wa_callback, NULL};
    char public_url[96], app_secret[80], verify_token[80];
    snprintf(public_url, sizeof(public_url), "WEBHOOK_PUBLIC_URL=http://127.0.0.1:%d", d->webhook_port);
    snprintf(app_secret, sizeof(app_secret), "WHATSAPP_APP_SECRET=%s", d->meta_app_secret);
    snprintf(verify_token, sizeof(verify_token), "WHATSAPP_WEBHOOK_VERIFY_TOKEN=%s", d->wa_verify_token);
    char *receiver_env[] = {public_url, twilio_token, app_secret, verify_token, data_key, tracking_key,
                            "SMS_HELP_TEXT=Acme CRM: reply STOP to unsubscribe, START to subscribe again.", NULL};
    char receiver_bin[PATH_MAX + 64];
    snprintf(receiver_bin, sizeof(receiver_bin), "%s/services/webhook-receiver/crm-webhook-receiver", d->bin_dir);
    d->has_receiver = access(receiver_bin, X_OK) == 0;
    /* Email tracking and List-Unsubscribe point at the receiver; the link
     * tokens are signed with the directory's own tracking key. */
    char tracking_base[96];
    snprintf(tracking_base, sizeof(tracking_base), "TRACKING_BASE_URL=http://127.0.0.1:%d", d->webhook_port);
    email_env[8] = tracking_base;
    email_env[9] = tracking_key;
    email_env[10] = "UNSUBSCRIBE_MAILTO=unsubscribe@crm.example";
    /* The router records which client an address belongs to (keyed hashes)
     * and the projector seals inbound bodies: both need the data key, or a
     * STOP reply finds no client and crm.inbound is left unread. */
    char *router_env[] = {"ROUTER_ENABLED_CHANNELS=email,sms,whatsapp", data_key, NULL};
    char *projector_env[] = {data_key, NULL};
    if (service_start(d, "projector", "projector", d->projector_port, projector_env) != 0 ||
        service_start(d, "router", "router", d->router_port, router_env) != 0 ||
        (d->has_receiver &&
         service_start(d, "webhook-receiver", "webhook-receiver", d->webhook_port, receiver_env) != 0) ||
        service_start(d, "email-worker", "email-worker", d->email_port, email_env) != 0 ||
        service_start(d, "sms-worker", "sms-worker", d->sms_port, sms_env) != 0 ||
        service_start(d, "whatsapp-worker", "whatsapp-worker", d->whatsapp_port, wa_env) != 0 ||
        service_start(d, "ingest", "ingest", d->ingest_port, NULL) != 0) {
        rc = 1;
        goto out;
    }
    printf("  services    ingest :%d, router :%d, email-worker :%d, sms-worker :%d, whatsapp-worker :%d,"
           " projector :%d",
           d->ingest_port, d->router_port, d->email_port, d->sms_port, d->whatsapp_port, d->projector_port);
    if (d->has_receiver)
        printf(", webhook-receiver :%d\n", d->webhook_port);
    else
        printf("\n  (crm-webhook-receiver is not built: no webhooks are received)\n");
    if (write_env(d) != 0 || write_secrets(d) != 0) {
        fprintf(stderr, "crmctl dev: cannot write %s/env\n", d->dir);
        rc = 1;
        goto out;
    }
    printf("crmctl dev: up. Endpoints in %s/env; logs in %s/log\n", d->dir, d->dir);

out:
    /* Record what was started even on failure, so `dev down` can stop it. */
    write_pids(d);
    if (rc != 0) {
        stop_procs(d);
        if (!d->external_pg)
            pg_stop(d);
        dev_path(d, path, sizeof(path), "pids");
        unlink(path);
    }
    return rc;
}

static int dev_down(dev_ctx_t *d)
{
    int had = read_pids(d) == 0;
    stop_procs(d);
    pg_stop(d);
    char path[PATH_MAX];
    dev_path(d, path, sizeof(path), "pids");
    unlink(path);
    dev_path(d, path, sizeof(path), "env");
    unlink(path);
    dev_path(d, path, sizeof(path), "secrets.env");
    unlink(path);
    printf("crmctl dev: %s\n", had ? "down" : "nothing was running");
    return 0;
}

static int dev_status(dev_ctx_t *d)
{
    if (read_pids(d) != 0) {
        printf("crmctl dev: not running\n");
        return 1;
    }
    int down = 0;
    for (int i = 0; i < d->nprocs; i++) {
        int alive = pid_alive(d->procs[i].pid);
        printf("  %-14s pid %-8d %s\n", d->procs[i].name, (int)d->procs[i].pid, alive ? "running" : "stopped");
        down += !alive;
    }
    return down ? 1 : 0;
}

/* The PostgreSQL port dev up used, from run/postgres.spec (so a restart
 * does not depend on CRM_DEV_PORT_BASE being set the same way). */
static int pg_port_from_spec(dev_ctx_t *d)
{
    dev_spec_t sp;
    if (read_spec(d, "postgres", &sp) != 0)
        return CMN_ERR_NOTFOUND;
    d->pg_port = sp.port;
    spec_free(&sp);
    return 0;
}

static int find_proc(const dev_ctx_t *d, const char *name)
{
    for (int i = 0; i < d->nprocs; i++) {
        if (strcmp(d->procs[i].name, name) == 0)
            return i;
    }
    return -1;
}

static int wait_gone(pid_t pid, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        if (!pid_alive(pid))
            return 0;
        usleep(50 * 1000);
    }
    return pid_alive(pid) ? CMN_ERR_TIMEOUT : 0;
}

/* `dev kill NAME`: SIGKILL, no chance to flush or commit anything; for
 * postgres, an immediate shutdown (every backend quits at once and the next
 * start runs crash recovery). */
static int dev_kill(dev_ctx_t *d, const char *name)
{
    if (strcmp(name, "postgres") == 0) {
        char data[PATH_MAX], log_path[PATH_MAX];
        if (pg_port_from_spec(d) != 0) {
            fprintf(stderr, "crmctl dev: no private PostgreSQL to kill (external, or not up)\n");
            return 1;
        }
        dev_path(d, data, sizeof(data), "pg/data");
        dev_path(d, log_path, sizeof(log_path), "log/postgres.log");
        char *stop[] = {DEV_PG_BIN "/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", NULL};
        int rc = pg_run(d, stop, log_path);
        printf("crmctl dev: postgres %s\n", rc == 0 ? "killed (immediate shutdown)" : "did not stop");
        return rc == 0 ? 0 : 1;
    }
    if (read_pids(d) != 0) {
        fprintf(stderr, "crmctl dev: not running\n");
        return 1;
    }
    int i = find_proc(d, name);
    if (i < 0) {
        fprintf(stderr, "crmctl dev: no process named '%s' in %s/pids\n", name, d->dir);
        return 2;
    }
    pid_t pid = d->procs[i].pid;
    if (!pid_alive(pid)) {
        printf("crmctl dev: %s (pid %d) was not running\n", name, (int)pid);
        return 0;
    }
    if (kill(pid, SIGKILL) != 0 || wait_gone(pid, 10000) != 0) {
        fprintf(stderr, "crmctl dev: could not kill %s (pid %d)\n", name, (int)pid);
        return 1;
    }
    printf("crmctl dev: %s (pid %d) killed\n", name, (int)pid);
    return 0;
}

/* `dev restart NAME`: stops it (SIGTERM, SIGKILL after 15 s) if it still
 * runs and starts it again from its spec, waiting until it is ready. The
 * new process inherits this command's environment plus the spec's
 * overrides, so run it with the environment `dev up` had. */
static int dev_restart(dev_ctx_t *d, const char *name)
{
    if (strcmp(name, "postgres") == 0) {
        if (pg_port_from_spec(d) != 0) {
            fprintf(stderr, "crmctl dev: no private PostgreSQL to restart (external, or not up)\n");
            return 1;
        }
        pg_stop(d);
        if (pg_start(d) != 0)
            return 1;
        printf("crmctl dev: postgres restarted on 127.0.0.1:%d\n", d->pg_port);
        return 0;
    }
    if (strcmp(name, "kafka") == 0) {
        /* The mock cluster keeps everything in memory: a new one would be
         * an empty cluster on another port. */
        fprintf(stderr, "crmctl dev: the embedded Kafka cannot be restarted (its data lives in memory); use its "
                        "fault-injection instead (docs/chaos.md)\n");
        return 2;
    }
    if (read_pids(d) != 0) {
        fprintf(stderr, "crmctl dev: not running\n");
        return 1;
    }
    int i = find_proc(d, name);
    if (i < 0) {
        fprintf(stderr, "crmctl dev: no process named '%s' in %s/pids\n", name, d->dir);
        return 2;
    }
    pid_t old = d->procs[i].pid;
    if (pid_alive(old)) {
        kill(old, SIGTERM);
        if (wait_gone(old, 15000) != 0) {
            kill(old, SIGKILL);
            wait_gone(old, 5000);
        }
    }
    dev_spec_t sp;
    if (read_spec(d, name, &sp) != 0) {
        fprintf(stderr, "crmctl dev: cannot read %s/run/%s.spec\n", d->dir, name);
        return 1;
    }
    int rc = spawn_daemon(d, name, sp.argv, sp.env, sp.ready, sp.port);
    if (rc == 0 && write_pids(d) != 0)
        rc = CMN_ERR_IO;
    if (rc == 0 && strcmp(sp.ready, "http") == 0)
        rc = wait_ready(d, &d->procs[i], sp.port, 60000);
    else if (rc == 0 && strcmp(sp.ready, "tcp") == 0)
        rc = wait_tcp(sp.port, d->procs[i].pid, 20000);
    spec_free(&sp);
    if (rc != 0) {
        fprintf(stderr, "crmctl dev: %s did not come back; see %s/log/%s.log\n", name, d->dir, name);
        return 1;
    }
    printf("crmctl dev: %s restarted (pid %d)\n", name, (int)d->procs[i].pid);
    return 0;
}

int crmctl_dev_main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: crmctl dev up | down | status | kill NAME | restart NAME\n"
                        "  NAME: a process of `dev status`, or postgres\n"
                        "  environment: CRM_DEV_DIR (default <source>/var/dev), CRM_DEV_PORT_BASE (18080),\n"
                        "  KAFKA_BROKERS / DATABASE_URL to use an existing cluster or database,\n"
                        "  CRM_DEV_STORM_TWILIO / _META (500=0.3,429=0.1,timeout=0.05), CRM_DEV_STORM_SMTP\n"
                        "  (451=0.2,drop=0.05), CRM_DEV_STORM_SEED, _RETRY_AFTER_S, _TIMEOUT_MS: provider storms\n");
        return 2;
    }
    dev_ctx_t *d = calloc(1, sizeof(*d));
    if (!d)
        return 1;
    int rc = dev_init(d);
    if (rc != 0) {
        free(d);
        return 2;
    }
    if (strcmp(argv[1], "up") == 0)
        rc = dev_up(d);
    else if (strcmp(argv[1], "down") == 0)
        rc = dev_down(d);
    else if (strcmp(argv[1], "status") == 0)
        rc = dev_status(d);
    else if ((strcmp(argv[1], "kill") == 0 || strcmp(argv[1], "restart") == 0) && argc != 3) {
        fprintf(stderr, "usage: crmctl dev %s NAME\n", argv[1]);
        rc = 2;
    } else if (strcmp(argv[1], "kill") == 0)
        rc = dev_kill(d, argv[2]);
    else if (strcmp(argv[1], "restart") == 0)
        rc = dev_restart(d, argv[2]);
    else {
        fprintf(stderr, "crmctl dev: unknown subcommand '%s' (up, down, status, kill, restart)\n", argv[1]);
        rc = 2;
    }
    free(d);
    return rc;
}
