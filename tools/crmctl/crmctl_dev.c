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
 *   - the services: projector, router, email worker, ingest.
 * It writes the endpoints to <dir>/env (shell syntax) and what it started to
 * <dir>/pids, which is all `dev down` stops.
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
#include "crmctl.h"

#ifndef CRM_DEFAULT_SOURCE_DIR
#define CRM_DEFAULT_SOURCE_DIR "."
#endif

#define DEV_MAX_PROCS 16
#define DEV_DIR_MAX 1024
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
    int ingest_port, router_port, email_port, projector_port, sms_port, whatsapp_port;
    int pg_port, smtp_port, twilio_port, meta_port;
    char twilio_sid[35];         /* AC + 32 hex, made up for the sandbox */
    char twilio_token[33];
    char meta_token[33];
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

/* Starts a long-running child in its own session with env overrides
 * ("NAME=value" strings, NULL-terminated) and records it in d->procs. */
static int spawn_daemon(dev_ctx_t *d, const char *name, char *const argv[], char *const env[])
{
    char log_path[PATH_MAX + 64];
    snprintf(log_path, sizeof(log_path), "%s/log/%s.log", d->dir, name);
    if (d->nprocs >= DEV_MAX_PROCS)
        return CMN_ERR_OVERFLOW;
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
    snprintf(d->procs[d->nprocs].name, sizeof(d->procs[d->nprocs].name), "%s", name);
    d->procs[d->nprocs].pid = pid;
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
    char *argv[] = {crmctl, "embedded-kafka", "--bootstrap-file", bootstrap, NULL};
    int rc = spawn_daemon(d, "kafka", argv, NULL);
    if (rc != 0)
        return rc;
    rc = wait_file(bootstrap, d->brokers, sizeof(d->brokers), d->procs[d->nprocs - 1].pid, 30000);
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
    char *argv[] = {"/usr/bin/python3", script, "--host", "127.0.0.1", "--port", port, "--maildir", maildir,
                    "--tls-cert", cert, "--tls-key", key, "--auth-user", "crm", "--fail-rcpt-prefix", "fail",
                    sink && strcmp(sink, "1") == 0 ? "--sink" : NULL, NULL};
    char pass_env[64];
    snprintf(pass_env, sizeof(pass_env), "SMTP_SANDBOX_PASSWORD=%s", d->smtp_password);
    char *env[] = {pass_env, NULL};
    int rc = spawn_daemon(d, "smtp", argv, env);
    if (rc != 0)
        return rc;
    rc = wait_tcp(d->smtp_port, d->procs[d->nprocs - 1].pid, 20000);
    if (rc != 0)
        fprintf(stderr, "crmctl dev: SMTP sandbox did not start; see %s/log/smtp.log\n", d->dir);
    return rc;
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
    char *argv[] = {bin, "--host", "127.0.0.1", "--port", port, "--account-sid", d->twilio_sid, "--spec", spec,
                    "--callbacks", NULL};
    int rc = spawn_daemon(d, "sandbox-twilio", argv, env);
    if (rc != 0)
        return rc;
    return wait_ready(d, &d->procs[d->nprocs - 1], d->twilio_port, 30000);
}

/* Reads <dir>/data.key, creating it with a random 64-hex-character key on
 * first use, and writes "CRM_DATA_KEY=<key>" into out. */
static int dev_data_key(const dev_ctx_t *d, char *out, size_t outlen)
{
    char path[DEV_DIR_MAX + 16], key[80] = "";
    snprintf(path, sizeof(path), "%s/data.key", d->dir);
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
    snprintf(out, outlen, "CRM_DATA_KEY=%s", key);
    return 0;
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
    if (random_hex(d->meta_token, 16) != 0)
        return CMN_ERR_IO;
    char token_env[64];
    snprintf(token_env, sizeof(token_env), "META_SANDBOX_ACCESS_TOKEN=%s", d->meta_token);
    char *env[] = {token_env, NULL};
    char *argv[] = {bin, "--host", "127.0.0.1", "--port", port, "--examples", examples, "--api-version", "v23.0",
                    "--phone-number-id", "106540352242922", NULL};
    int rc = spawn_daemon(d, "sandbox-meta", argv, env);
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
    int rc = spawn_daemon(d, name, argv, env);
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
    d->pg_port = d->port_base + 10;
    d->smtp_port = d->port_base + 11;
    d->twilio_port = d->port_base + 12;
    d->meta_port = d->port_base + 13;
    return 0;
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
                         "SMTP_USE_TLS=true", ca_env, NULL};
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
    char *sms_env[] = {twilio_url, twilio_sid, twilio_token, "TWILIO_PHONE_NUMBER=+14155550100",
                       "SMS_RATE_PER_SECOND=50", "SMS_RATE_BURST=10", NULL};
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
    char *wa_env[] = {"WHATSAPP_PROVIDER=meta", meta_url, "WHATSAPP_API_VERSION=v23.0",
                      "WHATSAPP_PHONE_NUMBER_ID=106540352242922", meta_token, data_key, NULL};
    char *router_env[] = {"ROUTER_ENABLED_CHANNELS=email,sms,whatsapp", NULL};
    if (service_start(d, "projector", "projector", d->projector_port, NULL) != 0 ||
        service_start(d, "router", "router", d->router_port, router_env) != 0 ||
        service_start(d, "email-worker", "email-worker", d->email_port, email_env) != 0 ||
        service_start(d, "sms-worker", "sms-worker", d->sms_port, sms_env) != 0 ||
        service_start(d, "whatsapp-worker", "whatsapp-worker", d->whatsapp_port, wa_env) != 0 ||
        service_start(d, "ingest", "ingest", d->ingest_port, NULL) != 0) {
        rc = 1;
        goto out;
    }
    printf("  services    ingest :%d, router :%d, email-worker :%d, sms-worker :%d, whatsapp-worker :%d,"
           " projector :%d\n",
           d->ingest_port, d->router_port, d->email_port, d->sms_port, d->whatsapp_port, d->projector_port);
    if (write_env(d) != 0) {
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

int crmctl_dev_main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: crmctl dev up | down | status\n"
                        "  environment: CRM_DEV_DIR (default <source>/var/dev), CRM_DEV_PORT_BASE (18080),\n"
                        "  KAFKA_BROKERS / DATABASE_URL to use an existing cluster or database\n");
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
    else {
        fprintf(stderr, "crmctl dev: unknown subcommand '%s' (up, down, status)\n", argv[1]);
        rc = 2;
    }
    free(d);
    return rc;
}
