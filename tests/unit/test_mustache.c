/* test_mustache.c - the Mustache renderer against every case of the official
 * spec (v1.3 core files, loaded at run time from the shared conformance
 * directory) plus the engine's own behaviour: plain-text mode, template error
 * messages, the nesting limit and length-bounded template input. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/mustache.h"

#define SPEC_DIR CRM_SHARED_DIR "/conformance/mustache-spec/"

/* The spec's partials live in each case's "partials" object; the returned
 * string belongs to that object, which outlives the render. */
static const char *spec_partial(void *ctx, const char *name)
{
    json_object *partials = ctx;
    json_object *v = NULL;
    if (partials == NULL || !json_object_object_get_ex(partials, name, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* Renders every case of one spec file and reports each failing case by name.
 * known_cases is the number of cases the v1.3 file holds, so a truncated or
 * swapped file fails loudly instead of passing with fewer checks. */
static void run_spec_file(const char *file, size_t known_cases)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s%s", SPEC_DIR, file);
    json_object *root = json_object_from_file(path);
    cr_assert_not_null(root, "cannot load %s: %s", path, json_util_get_last_err());
    json_object *tests = NULL;
    cr_assert(json_object_object_get_ex(root, "tests", &tests) && json_object_is_type(tests, json_type_array),
              "%s has no tests array", path);
    size_t count = json_object_array_length(tests);
    size_t ran = 0, passed = 0;

    for (size_t i = 0; i < count; i++) {
        json_object *tc = json_object_array_get_idx(tests, i);
        json_object *name = NULL, *data = NULL, *tmpl = NULL, *expected = NULL, *partials = NULL;
        json_object_object_get_ex(tc, "name", &name);
        json_object_object_get_ex(tc, "data", &data);
        json_object_object_get_ex(tc, "template", &tmpl);
        json_object_object_get_ex(tc, "expected", &expected);
        json_object_object_get_ex(tc, "partials", &partials);
        const char *case_name = name != NULL ? json_object_get_string(name) : "(unnamed)";
        cr_assert_not_null(tmpl, "%s: case '%s' has no template", file, case_name);
        cr_assert_not_null(expected, "%s: case '%s' has no expected output", file, case_name);

        cmn_mustache_opts_t opts = {.escape_html = 1, .partial = spec_partial, .partial_ctx = partials};
        cmn_buf_t out = CMN_BUF_INIT;
        char err[256] = "";
        int rc = cmn_mustache_render(json_object_get_string(tmpl), (size_t)json_object_get_string_len(tmpl), data,
                                     &opts, &out, err, sizeof(err));
        const char *got = out.data != NULL ? out.data : "";
        const char *want = json_object_get_string(expected);
        cr_expect_eq(rc, 0, "%s: case '%s': render failed (%d): %s", file, case_name, rc, err);
        cr_expect_str_eq(got, want, "%s: case '%s':\n--- expected\n%s\n--- got\n%s", file, case_name, want, got);
        if (rc == 0 && strcmp(got, want) == 0)
            passed++;
        ran++;
        cmn_buf_free(&out);
    }
    cr_log_info("%s: %zu/%zu spec cases pass", file, passed, ran);
    cr_expect_gt(ran, 0, "%s: no cases ran", file);
    cr_expect_eq(ran, count, "%s: ran %zu of %zu cases", file, ran, count);
    cr_expect_eq(count, known_cases, "%s: holds %zu cases, spec v1.3 has %zu", file, count, known_cases);
    json_object_put(root);
}

Test(mustache_spec, interpolation) { run_spec_file("interpolation.json", 42); }
Test(mustache_spec, sections) { run_spec_file("sections.json", 34); }
Test(mustache_spec, inverted) { run_spec_file("inverted.json", 22); }
Test(mustache_spec, comments) { run_spec_file("comments.json", 12); }
Test(mustache_spec, delimiters) { run_spec_file("delimiters.json", 14); }
Test(mustache_spec, partials) { run_spec_file("partials.json", 12); }

/* Renders tmpl (NUL-terminated) with data given as JSON text; returns the
 * render's result code and leaves output/error in out/err. */
static int render_str(const char *tmpl, const char *data_json, const cmn_mustache_opts_t *opts, cmn_buf_t *out,
                      char *err, size_t errlen)
{
    json_object *data = json_tokener_parse(data_json);
    cr_assert(data != NULL || strcmp(data_json, "null") == 0, "bad test data %s", data_json);
    int rc = cmn_mustache_render(tmpl, strlen(tmpl), data, opts, out, err, errlen);
    json_object_put(data);
    return rc;
}

static void expect_render(const char *tmpl, const char *data_json, int escape, const char *want)
{
    cmn_mustache_opts_t opts = {.escape_html = escape};
    cmn_buf_t out = CMN_BUF_INIT;
    char err[256] = "";
    int rc = render_str(tmpl, data_json, &opts, &out, err, sizeof(err));
    cr_expect_eq(rc, 0, "'%s': %s", tmpl, err);
    cr_expect_str_eq(out.data != NULL ? out.data : "", want, "template '%s'", tmpl);
    cmn_buf_free(&out);
}

/* Expects a template error whose message starts with "line N:" and contains
 * the given fragment. */
static void expect_template_error(const char *tmpl, const cmn_mustache_opts_t *opts, unsigned line, const char *fragment)
{
    cmn_buf_t out = CMN_BUF_INIT;
    cmn_buf_puts(&out, "kept");
    char err[256] = "";
    int rc = render_str(tmpl, "{\"a\":true,\"b\":\"x\"}", opts, &out, err, sizeof(err));
    cr_expect_eq(rc, CMN_ERR_TEMPLATE, "'%s' rendered (%d) instead of failing", tmpl, rc);
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "line %u: ", line);
    cr_expect_eq(strncmp(err, prefix, strlen(prefix)), 0, "'%s': message '%s' does not start with '%s'", tmpl, err,
                 prefix);
    cr_expect_not_null(strstr(err, fragment), "'%s': message '%s' lacks '%s'", tmpl, err, fragment);
    /* A failed render must not leave half a message in the caller's buffer. */
    cr_expect_str_eq(out.data, "kept");
    cmn_buf_free(&out);
}

Test(mustache, escape_html_off_renders_plain_text)
{
    const char *data = "{\"s\":\"Tom & Jerry's <b>\\\"show\\\"</b>\"}";
    expect_render("{{s}}", data, 0, "Tom & Jerry's <b>\"show\"</b>");
    expect_render("{{s}}|{{{s}}}|{{&s}}", data, 1,
                  "Tom &amp; Jerry&#39;s &lt;b&gt;&quot;show&quot;&lt;/b&gt;|Tom & Jerry's <b>\"show\"</b>|"
                  "Tom & Jerry's <b>\"show\"</b>");
}

Test(mustache, numbers_booleans_and_structures)
{
    expect_render("{{i}} {{d}} {{w}} {{n}} {{big}} {{neg}} {{t}} {{f}} {{z}}",
                  "{\"i\":85,\"d\":1.21,\"w\":2.0,\"n\":0.30000000000000004,\"big\":18446744073709551615,"
                  "\"neg\":-7,\"t\":true,\"f\":false,\"z\":null}",
                  1, "85 1.21 2 0.30000000000000004 18446744073709551615 -7 true false ");
    expect_render("{{{o}}}", "{\"o\":{\"a\":[1,\"x/y\"]}}", 1, "{\"a\":[1,\"x/y\"]}");
    /* 0 and "" are values the caller chose to send, so they are truthy. */
    expect_render("{{#z}}zero{{/z}}{{#e}}empty{{/e}}{{^l}}none{{/l}}", "{\"z\":0,\"e\":\"\",\"l\":[]}", 1,
                  "zeroemptynone");
}

Test(mustache, output_is_appended)
{
    cmn_buf_t out = CMN_BUF_INIT;
    cmn_buf_puts(&out, "Subject: ");
    char err[128] = "";
    cmn_mustache_opts_t opts = {.escape_html = 0};
    cr_assert_eq(render_str("Hi {{name}}", "{\"name\":\"Ann\"}", &opts, &out, err, sizeof(err)), 0, "%s", err);
    cr_expect_str_eq(out.data, "Subject: Hi Ann");
    cmn_buf_free(&out);
}

Test(mustache, template_errors_name_the_line)
{
    cmn_mustache_opts_t opts = {.escape_html = 1};
    expect_template_error("one\ntwo\nthree {{name", &opts, 3, "unclosed tag");
    expect_template_error("a\n{{{b}}\n", &opts, 2, "unclosed tag");
    expect_template_error("x\n{{#a}}\ny\n", &opts, 2, "section 'a' is never closed");
    expect_template_error("{{#a}}\n{{#b}}\n{{/a}}\n{{/b}}", &opts, 3, "does not match section 'b' opened on line 2");
    expect_template_error("\n\n\n\n{{/a}}", &opts, 5, "without an open section");
    expect_template_error("ok\n{{=<% %> x=}}", &opts, 2, "bad set-delimiter");
    expect_template_error("ok\n{{=<%=}}", &opts, 2, "bad set-delimiter");
    expect_template_error("{{=<% %>=}}\n\n<%a b%>", &opts, 3, "invalid name");
    expect_template_error("{{a..b}}", &opts, 1, "invalid name");
    expect_template_error("{{}}", &opts, 1, "invalid name");
    expect_template_error("{{<parent}}{{/parent}}", &opts, 1, "not supported");
}

static const char *one_partial(void *ctx, const char *name)
{
    json_object *partials = ctx;
    json_object *v = NULL;
    if (!json_object_object_get_ex(partials, name, &v))
        return NULL;
    return json_object_get_string(v);
}

Test(mustache, error_inside_partial_names_both_lines)
{
    json_object *partials = json_tokener_parse("{\"footer\":\"line one\\n{{#open}}\\n\"}");
    cmn_mustache_opts_t opts = {.escape_html = 1, .partial = one_partial, .partial_ctx = partials};
    expect_template_error("Hello\n\n{{>footer}}\n", &opts, 3, "in partial 'footer' line 2: section 'open' is never closed");
    json_object_put(partials);
}

Test(mustache, self_recursive_partial_hits_the_depth_limit)
{
    json_object *partials = json_tokener_parse("{\"self\":\"x{{>self}}\",\"tree\":\"{{#kids}}{{>tree}}{{/kids}}\"}");
    cmn_mustache_opts_t opts = {.escape_html = 1, .partial = one_partial, .partial_ctx = partials};
    expect_template_error("start\n{{>self}}", &opts, 2, "deeper than 64 levels (recursive partial?)");
    opts.max_depth = 5;
    expect_template_error("{{>self}}", &opts, 1, "deeper than 5 levels");

    /* Data-bounded recursion within the limit renders normally. Every tree
     * level costs two (the section and the partial). */
    cmn_buf_t out = CMN_BUF_INIT;
    char err[256] = "";
    int rc = render_str("{{>tree}}", "{\"kids\":[{\"kids\":[{\"kids\":[]}]}]}", &opts, &out, err, sizeof(err));
    cr_expect_eq(rc, 0, "%s", err);
    cr_expect_str_eq(out.data != NULL ? out.data : "", "");
    cmn_buf_free(&out);
    json_object_put(partials);
}

Test(mustache, section_nesting_respects_max_depth)
{
    cmn_mustache_opts_t opts = {.escape_html = 1, .max_depth = 3};
    cmn_buf_t out = CMN_BUF_INIT;
    char err[128] = "";
    cr_expect_eq(render_str("{{#a}}{{#a}}{{#a}}ok{{/a}}{{/a}}{{/a}}", "{\"a\":true}", &opts, &out, err, sizeof(err)), 0,
                 "%s", err);
    cr_expect_str_eq(out.data, "ok");
    cmn_buf_free(&out);
    expect_template_error("{{#a}}{{#a}}{{#a}}\n{{#a}}ok{{/a}}{{/a}}{{/a}}{{/a}}", &opts, 2, "deeper than 3 levels");
}

Test(mustache, template_length_is_honoured_without_nul)
{
    /* An exactly-sized heap copy with no terminator: any read past tmpl_len
     * is caught by the sanitizer build. */
    const char text[] = "Hi {{name}}!{{junk";
    size_t len = strlen("Hi {{name}}!");
    char *tmpl = malloc(len);
    cr_assert_not_null(tmpl);
    memcpy(tmpl, text, len);
    json_object *data = json_tokener_parse("{\"name\":\"Bo\"}");
    cmn_buf_t out = CMN_BUF_INIT;
    char err[128] = "";
    cr_expect_eq(cmn_mustache_render(tmpl, len, data, NULL, &out, err, sizeof(err)), 0, "%s", err);
    cr_expect_str_eq(out.data, "Hi Bo!");

    /* A tag cut off by the length is unclosed, even though the bytes after
     * it would close it. */
    cmn_buf_reset(&out);
    cr_expect_eq(cmn_mustache_render(text, strlen("Hi {{name}"), data, NULL, &out, err, sizeof(err)),
                 CMN_ERR_TEMPLATE);
    cr_expect_not_null(strstr(err, "line 1: unclosed tag"), "%s", err);

    cmn_buf_reset(&out);
    cr_expect_eq(cmn_mustache_render(NULL, 0, data, NULL, &out, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(out.len, 0);
    cmn_buf_free(&out);
    json_object_put(data);
    free(tmpl);
}

Test(mustache, invalid_arguments)
{
    cmn_buf_t out = CMN_BUF_INIT;
    char err[128] = "";
    cr_expect_eq(cmn_mustache_render("x", 1, NULL, NULL, NULL, err, sizeof(err)), CMN_ERR_INVALID);
    cr_expect_eq(cmn_mustache_render(NULL, 3, NULL, NULL, &out, err, sizeof(err)), CMN_ERR_INVALID);
    cmn_mustache_opts_t opts = {.max_depth = -1};
    cr_expect_eq(cmn_mustache_render("x", 1, NULL, &opts, &out, err, sizeof(err)), CMN_ERR_INVALID);
    cmn_buf_free(&out);
}

Test(mustache, standalone_partial_indentation_nests)
{
    json_object *partials = json_tokener_parse("{\"outer\":\"<ul>\\n  {{>inner}}\\n</ul>\\n\",\"inner\":\"<li>{{x}}</li>\\n<li>2</li>\\n\"}");
    cmn_mustache_opts_t opts = {.escape_html = 1, .partial = one_partial, .partial_ctx = partials};
    cmn_buf_t out = CMN_BUF_INIT;
    char err[128] = "";
    cr_expect_eq(render_str("<div>\r\n  {{>outer}}\r\n</div>", "{\"x\":1}", &opts, &out, err, sizeof(err)), 0, "%s", err);
    cr_expect_str_eq(out.data, "<div>\r\n  <ul>\n    <li>1</li>\n    <li>2</li>\n  </ul>\n</div>");
    cmn_buf_free(&out);
    json_object_put(partials);
}
