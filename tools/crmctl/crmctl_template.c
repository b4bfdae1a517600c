/* crmctl_template.c - `crmctl template render`: preview a message template
 * with a JSON data file, exactly as the workers render it (crm/mustache.h).
 *
 * Partials are files DIR/NAME.mustache, read lazily the first time the
 * renderer asks for them and kept for the rest of the render. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/mustache.h"
#include "crmctl.h"

#define TEMPLATE_PREFIX "crmctl template: "

/* One partial the renderer asked for. text is NULL when the partial is
 * missing or its name was refused, so each name is looked up (and warned
 * about) once. */
typedef struct partial_file {
    char *name; /* owned */
    char *text; /* owned, NUL-terminated file contents or NULL */
} partial_file_t;

/* The partial loader's context; lives on crmctl_template_main's stack for
 * exactly one render. */
typedef struct partial_loader {
    const char *dir;         /* borrowed from argv; NULL when --partials was not given */
    partial_file_t *files;   /* owned array */
    size_t nfiles;
    size_t cap;
    int failed;              /* a partial existed but could not be read: the render is not trustworthy */
} partial_loader_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: crmctl template render --template FILE --data FILE.json [--partials DIR] [--text]\n"
            "\n"
            "Renders the Mustache template FILE with the JSON document FILE.json and\n"
            "prints the result on stdout.\n"
            "\n"
            "  --template FILE   the template (Mustache, spec v1.3 core)\n"
            "  --data FILE.json  the data the template is rendered with\n"
            "  --partials DIR    where {{>name}} is looked up, as DIR/name.mustache;\n"
            "                    a name containing '/' or \"..\" (or starting with '.') is\n"
            "                    refused and renders as a missing partial; missing\n"
            "                    partials render empty (as in the workers) with a warning\n"
            "  --text            plain-text output (subjects, SMS, text bodies): {{x}} is\n"
            "                    not HTML-escaped; the default escapes like an HTML body\n"
            "\n"
            "Exit status: 0 rendered, 1 unreadable file, invalid JSON or template error,\n"
            "2 usage error.\n");
}

/* Reads a whole file into out (NUL-terminated by the buffer). On failure
 * returns a negative code with errno describing it for the caller's message. */
static int read_file(const char *path, cmn_buf_t *out)
{
    int rc = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return CMN_ERR_IO;
    char chunk[8192];
    for (;;) {
        size_t n = fread(chunk, 1, sizeof(chunk), f);
        if (n > 0) {
            rc = cmn_buf_append(out, chunk, n);
            if (rc < 0)
                goto cleanup;
        }
        if (n < sizeof(chunk))
            break;
    }
    if (ferror(f)) {
        rc = CMN_ERR_IO;
        goto cleanup;
    }
    /* An empty file still yields a valid empty string. */
    rc = cmn_buf_append(out, "", 0);

cleanup:
    if (rc == CMN_ERR_NOMEM || rc == CMN_ERR_OVERFLOW)
        errno = ENOMEM;
    if (f != NULL) {
        int saved = errno;
        fclose(f);
        errno = saved;
    }
    return rc;
}

/* Partial names come from template text, so a name must not be able to
 * leave DIR: no path separators, no parent references, no hidden files. */
static int partial_name_ok(const char *name)
{
    return name[0] != '\0' && name[0] != '.' && strchr(name, '/') == NULL && strstr(name, "..") == NULL;
}

/* cmn_mustache_partial_fn: returns the cached or freshly read partial text,
 * owned by the loader until loader_free(). */
static const char *load_partial(void *ctx, const char *name)
{
    partial_loader_t *l = ctx;
    for (size_t i = 0; i < l->nfiles; i++) {
        if (strcmp(l->files[i].name, name) == 0)
            return l->files[i].text;
    }

    if (l->nfiles == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        partial_file_t *grown = realloc(l->files, cap * sizeof(*grown));
        if (grown == NULL) {
            fprintf(stderr, TEMPLATE_PREFIX "out of memory loading partial '%s'\n", name);
            l->failed = 1;
            return NULL;
        }
        l->files = grown;
        l->cap = cap;
    }
    partial_file_t *pf = &l->files[l->nfiles];
    pf->text = NULL;
    pf->name = strdup(name);
    if (pf->name == NULL) {
        fprintf(stderr, TEMPLATE_PREFIX "out of memory loading partial '%s'\n", name);
        l->failed = 1;
        return NULL;
    }
    l->nfiles++;

    if (!partial_name_ok(name)) {
        fprintf(stderr, TEMPLATE_PREFIX "warning: partial name '%s' refused (no '/', \"..\" or leading '.'); "
                        "rendered as empty\n", name);
        return NULL;
    }
    if (l->dir == NULL) {
        fprintf(stderr, TEMPLATE_PREFIX "warning: partial '%s' used but no --partials DIR given; rendered as empty\n",
                name);
        return NULL;
    }

    cmn_buf_t path = CMN_BUF_INIT;
    cmn_buf_t text = CMN_BUF_INIT;
    if (cmn_buf_printf(&path, "%s/%s.mustache", l->dir, name) < 0) {
        fprintf(stderr, TEMPLATE_PREFIX "out of memory loading partial '%s'\n", name);
        l->failed = 1;
        goto cleanup;
    }
    if (read_file(path.data, &text) < 0) {
        if (errno == ENOENT) {
            fprintf(stderr, TEMPLATE_PREFIX "warning: partial '%s' not found (%s); rendered as empty\n", name,
                    path.data);
        } else {
            fprintf(stderr, TEMPLATE_PREFIX "%s: cannot read partial '%s': %s\n", path.data, name, strerror(errno));
            l->failed = 1;
        }
        goto cleanup;
    }
    if (strlen(text.data) != text.len)
        fprintf(stderr, TEMPLATE_PREFIX "warning: %s contains a NUL byte; the partial ends there\n", path.data);
    pf->text = cmn_buf_steal(&text);

cleanup:
    cmn_buf_free(&path);
    cmn_buf_free(&text);
    return pf->text;
}

static void loader_free(partial_loader_t *l)
{
    for (size_t i = 0; i < l->nfiles; i++) {
        free(l->files[i].name);
        free(l->files[i].text);
    }
    free(l->files);
    l->files = NULL;
    l->nfiles = 0;
    l->cap = 0;
}

/* Turns a byte offset into a 1-based line and column, for messages that
 * point into a file. */
static void offset_to_line(const char *text, size_t len, size_t offset, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

typedef struct render_args {
    const char *template_path;
    const char *data_path;
    const char *partials_dir;
    int text;
} render_args_t;

/* Parses the options after "render". Returns 0, 1 for --help (already
 * printed), or 2 for a usage error (already reported). */
static int parse_render_args(int argc, char **argv, render_args_t *a)
{
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        const char **slot = NULL;
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(opt, "--text") == 0) {
            a->text = 1;
            continue;
        }
        if (strcmp(opt, "--template") == 0)
            slot = &a->template_path;
        else if (strcmp(opt, "--data") == 0)
            slot = &a->data_path;
        else if (strcmp(opt, "--partials") == 0)
            slot = &a->partials_dir;
        if (slot == NULL) {
            fprintf(stderr, TEMPLATE_PREFIX "unknown option '%s'\n", opt);
            usage(stderr);
            return 2;
        }
        if (i + 1 >= argc || argv[i + 1][0] == '\0') {
            fprintf(stderr, TEMPLATE_PREFIX "option %s needs a value\n", opt);
            usage(stderr);
            return 2;
        }
        if (*slot != NULL) {
            fprintf(stderr, TEMPLATE_PREFIX "option %s given twice\n", opt);
            usage(stderr);
            return 2;
        }
        *slot = argv[++i];
    }
    if (a->template_path == NULL || a->data_path == NULL) {
        fprintf(stderr, TEMPLATE_PREFIX "render needs --template FILE and --data FILE.json\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

int crmctl_template_main(int argc, char **argv)
{
    int status = 1;
    render_args_t args = {0};
    cmn_buf_t tmpl = CMN_BUF_INIT;
    cmn_buf_t data_text = CMN_BUF_INIT;
    cmn_buf_t out = CMN_BUF_INIT;
    json_object *data = NULL;
    partial_loader_t loader = {0};
    cmn_mustache_opts_t opts = {.partial = load_partial, .partial_ctx = &loader};
    char err[512] = "";
    int rc = 0;

    if (argc < 2) {
        fprintf(stderr, TEMPLATE_PREFIX "missing subcommand\n");
        usage(stderr);
        status = 2;
        goto cleanup;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        status = 0;
        goto cleanup;
    }
    if (strcmp(argv[1], "render") != 0) {
        fprintf(stderr, TEMPLATE_PREFIX "unknown subcommand '%s'\n", argv[1]);
        usage(stderr);
        status = 2;
        goto cleanup;
    }
    rc = parse_render_args(argc, argv, &args);
    if (rc != 0) {
        status = rc == 1 ? 0 : 2;
        goto cleanup;
    }

    if (read_file(args.template_path, &tmpl) < 0) {
        fprintf(stderr, TEMPLATE_PREFIX "%s: cannot read template: %s\n", args.template_path, strerror(errno));
        goto cleanup;
    }
    if (read_file(args.data_path, &data_text) < 0) {
        fprintf(stderr, TEMPLATE_PREFIX "%s: cannot read data: %s\n", args.data_path, strerror(errno));
        goto cleanup;
    }
    data = cmn_json_parse(data_text.data, data_text.len, err, sizeof(err));
    /* JSON null parses to NULL too, and is legitimate (if useless) data. */
    if (data == NULL && err[0] != '\0') {
        size_t offset = 0, line = 0, col = 0;
        if (sscanf(err, "invalid JSON at offset %zu", &offset) == 1) {
            offset_to_line(data_text.data, data_text.len, offset, &line, &col);
            fprintf(stderr, TEMPLATE_PREFIX "%s: line %zu, column %zu: %s\n", args.data_path, line, col, err);
        } else {
            fprintf(stderr, TEMPLATE_PREFIX "%s: %s\n", args.data_path, err);
        }
        goto cleanup;
    }

    loader.dir = args.partials_dir;
    opts.escape_html = !args.text;
    rc = cmn_mustache_render(tmpl.data, tmpl.len, data, &opts, &out, err, sizeof(err));
    if (rc == CMN_ERR_TEMPLATE) {
        fprintf(stderr, TEMPLATE_PREFIX "%s: %s\n", args.template_path, err);
        goto cleanup;
    }
    if (rc < 0) {
        fprintf(stderr, TEMPLATE_PREFIX "%s: %s: %s\n", args.template_path, cmn_strerror(rc), err);
        goto cleanup;
    }
    if (loader.failed) {
        /* The reason was printed when the partial failed to load. */
        fprintf(stderr, TEMPLATE_PREFIX "%s: not rendered: a partial could not be loaded\n", args.template_path);
        goto cleanup;
    }
    if (out.len > 0 && fwrite(out.data, 1, out.len, stdout) != out.len) {
        fprintf(stderr, TEMPLATE_PREFIX "cannot write output: %s\n", strerror(errno));
        goto cleanup;
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, TEMPLATE_PREFIX "cannot write output: %s\n", strerror(errno));
        goto cleanup;
    }
    status = 0;

cleanup:
    json_object_put(data);
    loader_free(&loader);
    cmn_buf_free(&out);
    cmn_buf_free(&data_text);
    cmn_buf_free(&tmpl);
    return status;
}
