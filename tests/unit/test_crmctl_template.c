/* test_crmctl_template.c - `crmctl template render` end to end through
 * crmctl_template_main(): real files in a temporary directory, stdout and
 * stderr captured through their file descriptors, exit codes checked. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crmctl.h"

/* A scratch directory with the files one test writes; removed afterwards. */
typedef struct scratch {
    char dir[64];
    char paths[16][256];
    size_t npaths;
} scratch_t;

static void scratch_init(scratch_t *s)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/crmctl_template_XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir), "mkdtemp failed");
}

/* Writes content to dir/name and returns the full path (owned by s). */
static const char *scratch_write(scratch_t *s, const char *name, const char *content)
{
    cr_assert_lt(s->npaths, sizeof(s->paths) / sizeof(s->paths[0]));
    /* Formatted into a local first: s->dir and s->paths share one object,
     * which snprintf's restrict-qualified arguments must not. */
    char full[sizeof(s->paths[0])];
    snprintf(full, sizeof(full), "%s/%s", s->dir, name);
    char *path = s->paths[s->npaths++];
    memcpy(path, full, sizeof(full));
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(content, 1, strlen(content), f), strlen(content));
    cr_assert_eq(fclose(f), 0);
    return path;
}

static void scratch_cleanup(scratch_t *s)
{
    for (size_t i = 0; i < s->npaths; i++)
        unlink(s->paths[i]);
    rmdir(s->dir);
}

static char *slurp(FILE *f)
{
    long size;
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    cr_assert_geq(size, 0);
    rewind(f);
    char *text = calloc(1, (size_t)size + 1);
    cr_assert_not_null(text);
    cr_assert_eq(fread(text, 1, (size_t)size, f), (size_t)size);
    return text;
}

typedef struct run_result {
    int status;
    char *out; /* owned */
    char *err; /* owned */
} run_result_t;

/* Runs crmctl_template_main with argv (NULL-terminated) while fds 1 and 2
 * point at temporary files, then restores them. */
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
    FILE *err = tmpfile();
    cr_assert(out != NULL && err != NULL);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(STDOUT_FILENO);
    int saved_err = dup(STDERR_FILENO);
    cr_assert(saved_out >= 0 && saved_err >= 0);
    cr_assert_geq(dup2(fileno(out), STDOUT_FILENO), 0);
    cr_assert_geq(dup2(fileno(err), STDERR_FILENO), 0);

    run_result_t r = {0};
    r.status = crmctl_template_main(argc, argv);

    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    r.out = slurp(out);
    r.err = slurp(err);
    fclose(out);
    fclose(err);
    return r;
}

static void result_free(run_result_t *r)
{
    free(r->out);
    free(r->err);
}

Test(crmctl_template, renders_with_partials_and_escaping)
{
    scratch_t s;
    scratch_init(&s);
    const char *tmpl = scratch_write(&s, "welcome.mustache",
                                     "<p>Hello {{name}}</p>\n"
                                     "<ul>\n"
                                     "  {{>item}}\n"
                                     "</ul>\n"
                                     "{{>footer}}");
    const char *data = scratch_write(&s, "data.json",
                                     "{\"name\": \"Ann & Bob\", \"items\": [{\"title\": \"<Dinner>\"}, {\"title\": \"Party\"}]}");
    scratch_write(&s, "item.mustache", "{{#items}}\n<li>{{title}}</li>\n{{/items}}\n");
    scratch_write(&s, "footer.mustache", "-- {{>sig}}");
    scratch_write(&s, "sig.mustache", "The team");

    run_result_t r = run((const char *[]){"template", "render", "--template", tmpl, "--data", data, "--partials",
                                          s.dir, NULL});
    cr_expect_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect_str_eq(r.out, "<p>Hello Ann &amp; Bob</p>\n"
                            "<ul>\n"
                            "  <li>&lt;Dinner&gt;</li>\n"
                            "  <li>Party</li>\n"
                            "</ul>\n"
                            "-- The team");
    cr_expect_str_eq(r.err, "");
    result_free(&r);

    /* --text is for subjects and SMS bodies: nothing is HTML-escaped. */
    r = run((const char *[]){"template", "render", "--text", "--template", tmpl, "--data", data, "--partials", s.dir,
                             NULL});
    cr_expect_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect_not_null(strstr(r.out, "Hello Ann & Bob"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "<li><Dinner></li>"), "%s", r.out);
    result_free(&r);
    scratch_cleanup(&s);
}

Test(crmctl_template, missing_and_refused_partials_render_empty_with_a_warning)
{
    scratch_t s;
    scratch_init(&s);
    const char *tmpl = scratch_write(&s, "t.mustache", "[{{>nope}}][{{>../t}}][{{>nope}}]");
    const char *data = scratch_write(&s, "d.json", "{}");

    run_result_t r = run((const char *[]){"template", "render", "--template", tmpl, "--data", data, "--partials",
                                          s.dir, NULL});
    cr_expect_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect_str_eq(r.out, "[][][]");
    cr_expect_not_null(strstr(r.err, "partial 'nope' not found"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "partial name '../t' refused"), "%s", r.err);
    /* Looked up once per render, so warned about once. */
    const char *first = strstr(r.err, "'nope'");
    cr_expect(first != NULL && strstr(first + 1, "'nope'") == NULL, "warned twice: %s", r.err);
    result_free(&r);
    scratch_cleanup(&s);
}

Test(crmctl_template, template_error_exits_1_with_file_and_line)
{
    scratch_t s;
    scratch_init(&s);
    const char *tmpl = scratch_write(&s, "broken.mustache", "Hi {{name}}\n{{#items}}\n{{title}}\n");
    const char *data = scratch_write(&s, "d.json", "{\"name\":\"x\"}");

    run_result_t r = run((const char *[]){"template", "render", "--template", tmpl, "--data", data, NULL});
    cr_expect_eq(r.status, 1);
    cr_expect_str_eq(r.out, "", "partial output must not be printed");
    char want[512];
    snprintf(want, sizeof(want), "crmctl template: %s: line 2: section 'items' is never closed\n", tmpl);
    cr_expect_str_eq(r.err, want);
    result_free(&r);
    scratch_cleanup(&s);
}

Test(crmctl_template, missing_or_invalid_data_exits_1)
{
    scratch_t s;
    scratch_init(&s);
    const char *tmpl = scratch_write(&s, "t.mustache", "{{x}}");
    char missing[256];
    snprintf(missing, sizeof(missing), "%s/absent.json", s.dir);

    run_result_t r = run((const char *[]){"template", "render", "--template", tmpl, "--data", missing, NULL});
    cr_expect_eq(r.status, 1);
    cr_expect_str_eq(r.out, "");
    cr_expect_not_null(strstr(r.err, "crmctl template: "), "%s", r.err);
    cr_expect_not_null(strstr(r.err, missing), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "No such file"), "%s", r.err);
    result_free(&r);

    const char *bad = scratch_write(&s, "bad.json", "{\n  \"x\": 1,\n  oops\n}");
    r = run((const char *[]){"template", "render", "--template", tmpl, "--data", bad, NULL});
    cr_expect_eq(r.status, 1);
    cr_expect_not_null(strstr(r.err, bad), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "line 3"), "%s", r.err);
    result_free(&r);

    char no_tmpl[256];
    snprintf(no_tmpl, sizeof(no_tmpl), "%s/absent.mustache", s.dir);
    r = run((const char *[]){"template", "render", "--template", no_tmpl, "--data", bad, NULL});
    cr_expect_eq(r.status, 1);
    cr_expect_not_null(strstr(r.err, no_tmpl), "%s", r.err);
    result_free(&r);
    scratch_cleanup(&s);
}

Test(crmctl_template, usage_errors_exit_2)
{
    const char *const *cases[] = {
        (const char *[]){"template", NULL},
        (const char *[]){"template", "preview", NULL},
        (const char *[]){"template", "render", NULL},
        (const char *[]){"template", "render", "--template", "t.mustache", NULL},
        (const char *[]){"template", "render", "--data", "d.json", NULL},
        (const char *[]){"template", "render", "--template", "t", "--data", NULL},
        (const char *[]){"template", "render", "--template", "t", "--data", "d", "--bogus", NULL},
        (const char *[]){"template", "render", "--template", "t", "--template", "u", "--data", "d", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run_result_t r = run(cases[i]);
        cr_expect_eq(r.status, 2, "case %zu exited %d", i, r.status);
        cr_expect_not_null(strstr(r.err, "usage: crmctl template render"), "case %zu: %s", i, r.err);
        cr_expect_str_eq(r.out, "", "case %zu", i);
        result_free(&r);
    }

    run_result_t r = run((const char *[]){"template", "render", "--help", NULL});
    cr_expect_eq(r.status, 0);
    cr_expect_not_null(strstr(r.out, "usage: crmctl template render"));
    result_free(&r);
}
