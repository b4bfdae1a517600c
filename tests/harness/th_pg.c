/* th_pg.c - a private PostgreSQL server for the tests (see th_pg.h).
 *
 * Criterion runs every test in its own forked worker, so "once per test
 * binary run" cannot live in one process's memory. The server therefore
 * belongs to the *owner* process (the Criterion runner, or the test process
 * itself when nothing forked it) and lives in CRM_BINARY_DIR/test-pg-<owner>:
 *   - the first worker that needs it takes a file lock, runs initdb and
 *     pg_ctl start, and records the port in the directory;
 *   - later workers find the port there and reuse the server;
 *   - a small detached watchdog process stops the server and removes the
 *     directory once the owner exits, whatever way it exits; the owner
 *     itself also stops it from atexit when it started it directly.
 *
 * PostgreSQL refuses to run as root, so when the tests run as root initdb and
 * pg_ctl run as the postgres user (runuser) on a directory chowned to it.
 *
 * The only mutable state is th_pg_cache below: the harness API has no handle,
 * and the cache only remembers what is already on disk. */
/* nftw() is an XSI extension. */
#define _XOPEN_SOURCE 700

#include "th_pg.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "crm/pg.h"

#define TH_PG_USER "postgres"
#define TH_PG_START_TRIES 3
/* The database every test database is copied from: the migrations are
 * applied to it once per server instead of once per test. */
#define TH_PG_TEMPLATE "th_pg_template"

static struct {
    pid_t pid;      /* process that filled the cache (a fork must re-check) */
    int port;       /* 0: unknown */
    char dir[512];
} th_pg_cache;

/* The process whose lifetime the server follows: the parent when it runs the
 * same executable (a Criterion worker), else this process. */
static pid_t th_pg_owner(void)
{
    char self[512] = "", parent[512] = "", link[64];
    pid_t ppid = getppid();
    snprintf(link, sizeof link, "/proc/%d/exe", (int)ppid);
    ssize_t a = readlink("/proc/self/exe", self, sizeof self - 1);
    ssize_t b = readlink(link, parent, sizeof parent - 1);
    if (a > 0 && b > 0 && a == b && memcmp(self, parent, (size_t)a) == 0)
        return ppid;
    return getpid();
}

static int th_pg_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *walk)
{
    (void)st;
    (void)flag;
    (void)walk;
    remove(path);
    return 0;
}

static void th_pg_rmtree(const char *dir)
{
    nftw(dir, th_pg_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Directory of initdb/pg_ctl: $CRM_PG_BINDIR, else the newest
 * /usr/lib/postgresql/<major>/bin (Debian layout), else "" to use PATH. */
static void th_pg_bindir(char *out, size_t outlen)
{
    const char *env = getenv("CRM_PG_BINDIR");
    out[0] = '\0';
    if (env != NULL && env[0] != '\0') {
        snprintf(out, outlen, "%s", env);
        return;
    }
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, NULL, &g) != 0)
        return;
    long best = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        long major = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
        if (major > best) {
            best = major;
            snprintf(out, outlen, "%.*s", (int)(strlen(g.gl_pathv[i]) - strlen("/pg_ctl")), g.gl_pathv[i]);
        }
    }
    globfree(&g);
}

/* Runs argv (argv[0] a program name inside bindir) to completion with its
 * output appended to logpath, as the postgres user when we are root. The
 * child gets its own session and no inherited descriptors, so a server it
 * leaves running never holds the test runner's pipes (ctest waits for those)
 * nor is killed with the runner's process group. Returns the exit code or -1. */
static int th_pg_run(const char *bindir, char *const argv[], const char *logpath)
{
    char prog[1024];
    if (bindir[0] != '\0')
        snprintf(prog, sizeof prog, "%s/%s", bindir, argv[0]);
    else
        snprintf(prog, sizeof prog, "%s", argv[0]);

    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setsid();
        int devnull = open("/dev/null", O_RDONLY);
        int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (devnull >= 0)
            dup2(devnull, 0);
        if (log >= 0) {
            dup2(log, 1);
            dup2(log, 2);
        }
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        char *args[32];
        int n = 0;
        if (geteuid() == 0) {
            args[n++] = "runuser";
            args[n++] = "-u";
            args[n++] = TH_PG_USER;
            args[n++] = "--";
        }
        args[n++] = prog;
        for (int i = 1; argv[i] != NULL && n < 31; i++)
            args[n++] = argv[i];
        args[n] = NULL;
        execvp(args[0], args);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int th_pg_free_port(void)
{
    int port = -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int th_pg_ping(int port)
{
    char conninfo[128];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=postgres user=%s connect_timeout=5", port,
             TH_PG_USER);
    return PQping(conninfo) == PQPING_OK;
}

static int th_pg_read_port(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/port", dir);
    FILE *f = fopen(path, "r");
    int port = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%d", &port) != 1)
        port = 0;
    fclose(f);
    return port;
}

static int th_pg_write_port(const char *dir, int port)
{
    char path[600];
    snprintf(path, sizeof path, "%s/port", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%d\n", port);
    return fclose(f) == 0 ? 0 : -1;
}

static void th_pg_stop_dir(const char *dir)
{
    char bindir[512], data[600], log[600];
    th_pg_bindir(bindir, sizeof bindir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(log, sizeof log, "%s/commands.log", dir);
    struct stat st;
    if (stat(data, &st) == 0) {
        char *argv[] = {"pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "30", "stop", NULL};
        th_pg_run(bindir, argv, log);
    }
    th_pg_rmtree(dir);
}

/* Starts a detached shell that waits for the owner to exit, then stops the
 * server and removes its directory and lock file. The command line is built
 * before fork() and the child execs at once: the test process may have
 * threads, so the child must not call into malloc or stdio. */
static void th_pg_spawn_watchdog(pid_t owner, const char *dir, const char *lockpath)
{
    char bindir[512], script[4096];
    th_pg_bindir(bindir, sizeof bindir);
    snprintf(script, sizeof script,
             "while kill -0 %d 2>/dev/null; do sleep 0.2; done; "
             "%s '%s%spg_ctl' -D '%s/data' -m fast -w -t 30 stop >/dev/null 2>&1; rm -rf '%s' '%s'",
             (int)owner, geteuid() == 0 ? "runuser -u " TH_PG_USER " --" : "", bindir, bindir[0] ? "/" : "",
             dir, dir, lockpath);
    pid_t pid = fork();
    if (pid < 0)
        return;
    if (pid == 0) {
        setsid();
        if (fork() != 0)
            _exit(0);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        execl("/bin/sh", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    waitpid(pid, NULL, 0);
}

static void th_pg_atexit(void)
{
    /* Only the owner stops the server at exit: a Criterion worker exiting
     * after its test must leave it running for the next test. */
    if (th_pg_cache.pid == getpid() && th_pg_owner() == getpid())
        th_pg_stop();
}

/* initdb + configuration + pg_ctl start in dir. Returns the port or -1. */
static int th_pg_create_server(const char *dir)
{
    char bindir[512], data[600], log[600], serverlog[600], conf[640];
    th_pg_bindir(bindir, sizeof bindir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(log, sizeof log, "%s/commands.log", dir);
    snprintf(serverlog, sizeof serverlog, "%s/postgres.log", dir);
    snprintf(conf, sizeof conf, "%s/postgresql.conf", data);

    th_pg_rmtree(dir); /* a leftover of a crashed run with a reused pid */
    if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "th_pg: mkdir %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam(TH_PG_USER);
        if (pw == NULL || chown(dir, pw->pw_uid, pw->pw_gid) != 0) {
            fprintf(stderr, "th_pg: running as root needs a '%s' user owning %s\n", TH_PG_USER, dir);
            return -1;
        }
    }
    char *initdb[] = {"initdb", "-D", data, "-U", TH_PG_USER, "-A", "trust", "-E", "UTF8", "--locale=C",
                      "--no-sync", "--no-instructions", NULL};
    if (th_pg_run(bindir, initdb, log) != 0) {
        fprintf(stderr, "th_pg: initdb failed, see %s\n", log);
        return -1;
    }
    /* Throwaway data: durability off for speed. The socket goes inside our
     * directory (never /var/run, which root-less runs cannot write) unless
     * the path is too long for a Unix socket, in which case TCP alone is used. */
    FILE *f = fopen(conf, "a");
    if (f == NULL) {
        fprintf(stderr, "th_pg: cannot append to %s: %s\n", conf, strerror(errno));
        return -1;
    }
    fprintf(f, "\n# th_pg test settings\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"
               "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
               "shared_buffers = 32MB\n",
            strlen(dir) < 90 ? dir : "");
    fclose(f);

    for (int attempt = 0; attempt < TH_PG_START_TRIES; attempt++) {
        int port = th_pg_free_port();
        char opts[64];
        snprintf(opts, sizeof opts, "-p %d", port);
        char *start[] = {"pg_ctl", "-D", data, "-l", serverlog, "-o", opts, "-w", "-t", "60", "start", NULL};
        if (port > 0 && th_pg_run(bindir, start, log) == 0 && th_pg_ping(port))
            return port;
        /* Most likely another process took the port between our probe and
         * the server's bind: try another one. */
        char *stop[] = {"pg_ctl", "-D", data, "-m", "immediate", "stop", NULL};
        th_pg_run(bindir, stop, log);
    }
    fprintf(stderr, "th_pg: the server did not start, see %s and %s\n", log, serverlog);
    return -1;
}

static int th_pg_admin_exec(PGconn *conn, const char *sql);

/* Creates TH_PG_TEMPLATE on the new server at port with every migration of
 * CRM_SOURCE_DIR/migrations, then closes it to connections (a database
 * being copied must have none). Returns 0 or -1. */
static int th_pg_make_template(int port)
{
    int rc = -1;
    PGconn *admin = NULL, *db = NULL;
    char url[256], err[1024];
    snprintf(url, sizeof url, "postgresql://%s@127.0.0.1:%d/postgres", TH_PG_USER, port);
    admin = cmn_pg_connect(url, 10000, err, sizeof err);
    if (admin == NULL) {
        fprintf(stderr, "th_pg: %s\n", err);
        goto cleanup;
    }
    if (th_pg_admin_exec(admin, "CREATE DATABASE " TH_PG_TEMPLATE) != 0)
        goto cleanup;
    snprintf(url, sizeof url, "postgresql://%s@127.0.0.1:%d/" TH_PG_TEMPLATE, TH_PG_USER, port);
    db = cmn_pg_connect(url, 10000, err, sizeof err);
    if (db == NULL) {
        fprintf(stderr, "th_pg: %s\n", err);
        goto cleanup;
    }
    int applied = 0;
    if (cmn_pg_migrate(db, CRM_SOURCE_DIR "/migrations", NULL, &applied, err, sizeof err) != 0) {
        fprintf(stderr, "th_pg: migrating %s: %s\n", TH_PG_TEMPLATE, err);
        goto cleanup;
    }
    PQfinish(db);
    db = NULL;
    if (th_pg_admin_exec(admin, "ALTER DATABASE " TH_PG_TEMPLATE " WITH IS_TEMPLATE true ALLOW_CONNECTIONS false") !=
        0)
        goto cleanup;
    rc = 0;
cleanup:
    PQfinish(db);
    PQfinish(admin);
    return rc;
}

/* Makes sure the shared server runs; fills the cache. Returns 0 or -1. */
static int th_pg_ensure_server(void)
{
    int rc = -1;
    int lockfd = -1;
    pid_t owner = th_pg_owner();
    char dir[512], lockpath[560];

    if (th_pg_cache.pid == getpid() && th_pg_cache.port > 0 && th_pg_ping(th_pg_cache.port))
        return 0;
    snprintf(dir, sizeof dir, "%s/test-pg-%d", CRM_BINARY_DIR, (int)owner);
    snprintf(lockpath, sizeof lockpath, "%s.lock", dir);
    /* Parallel workers (--jobs N) must not initdb the same directory twice. */
    lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lockfd < 0 || flock(lockfd, LOCK_EX) != 0) {
        fprintf(stderr, "th_pg: cannot lock %s: %s\n", lockpath, strerror(errno));
        goto cleanup;
    }
    int port = th_pg_read_port(dir);
    if (port <= 0 || !th_pg_ping(port)) {
        port = th_pg_create_server(dir);
        if (port <= 0)
            goto cleanup;
        /* Before the port is recorded: a server others can find always has
         * its template. Without one it is of no use; stop it rather than
         * leave it running without a watchdog. */
        if (th_pg_make_template(port) != 0) {
            th_pg_stop_dir(dir);
            goto cleanup;
        }
        if (th_pg_write_port(dir, port) != 0) {
            fprintf(stderr, "th_pg: cannot record the port in %s\n", dir);
            goto cleanup;
        }
        th_pg_spawn_watchdog(owner, dir, lockpath);
        if (owner == getpid())
            atexit(th_pg_atexit);
    }
    th_pg_cache.pid = getpid();
    th_pg_cache.port = port;
    snprintf(th_pg_cache.dir, sizeof th_pg_cache.dir, "%s", dir);
    rc = 0;
cleanup:
    if (lockfd >= 0)
        close(lockfd);
    return rc;
}

static int th_pg_valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 60 || isdigit((unsigned char)name[0]))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!(islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) || name[i] == '_'))
            return 0;
    }
    return 1;
}

static int th_pg_admin_exec(PGconn *conn, const char *sql)
{
    char err[1024];
    if (cmn_pg_exec(conn, sql, err, sizeof err) != 0) {
        fprintf(stderr, "th_pg: %s: %s\n", sql, err);
        return -1;
    }
    return 0;
}

int th_pg_database(const char *name, char *url, size_t urllen)
{
    int rc = -1;
    PGconn *admin = NULL;
    char admin_url[256], err[1024], sql[256];

    if (name == NULL || url == NULL || !th_pg_valid_name(name) || strcmp(name, TH_PG_TEMPLATE) == 0) {
        fprintf(stderr, "th_pg: database names are lower-case identifiers, got '%s'\n", name ? name : "(null)");
        return -1;
    }
    if (th_pg_ensure_server() != 0)
        return -1;
    snprintf(admin_url, sizeof admin_url, "postgresql://%s@127.0.0.1:%d/postgres", TH_PG_USER, th_pg_cache.port);
    admin = cmn_pg_connect(admin_url, 10000, err, sizeof err);
    if (admin == NULL) {
        fprintf(stderr, "th_pg: %s\n", err);
        goto cleanup;
    }
    /* WITH (FORCE) ends sessions a previous test left behind. */
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    if (th_pg_admin_exec(admin, sql) != 0)
        goto cleanup;
    /* A copy of the migrated template: the same schema and
     * schema_migrations rows as migrating this database would give. */
    snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE " TH_PG_TEMPLATE, name);
    if (th_pg_admin_exec(admin, sql) != 0)
        goto cleanup;
    snprintf(url, urllen, "postgresql://%s@127.0.0.1:%d/%s", TH_PG_USER, th_pg_cache.port, name);
    rc = 0;
cleanup:
    PQfinish(admin);
    return rc;
}

int th_pg_query_value(const char *url, const char *sql, char *out, size_t outlen)
{
    int rc = -1;
    char err[1024];
    PGresult *res = NULL;
    if (out != NULL && outlen > 0)
        out[0] = '\0';
    PGconn *conn = cmn_pg_connect(url, 10000, err, sizeof err);
    if (conn == NULL) {
        fprintf(stderr, "th_pg: %s\n", err);
        return -1;
    }
    res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        fprintf(stderr, "th_pg: %s: %s\n", sql, PQresultErrorMessage(res));
        goto cleanup;
    }
    if (st == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0 && out != NULL && outlen > 0)
        snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0));
    rc = 0;
cleanup:
    PQclear(res);
    PQfinish(conn);
    return rc;
}

void th_pg_stop(void)
{
    char dir[512];
    if (th_pg_cache.dir[0] != '\0')
        snprintf(dir, sizeof dir, "%s", th_pg_cache.dir);
    else
        snprintf(dir, sizeof dir, "%s/test-pg-%d", CRM_BINARY_DIR, (int)th_pg_owner());
    struct stat st;
    if (stat(dir, &st) == 0)
        th_pg_stop_dir(dir);
    th_pg_cache.port = 0;
    th_pg_cache.dir[0] = '\0';
}
