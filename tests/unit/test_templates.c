/* Unit tests of the shared template loader (common/src/templates.c): the
 * locale fallback chain, partials, the cache, name checks, missing files,
 * escaping and the preloaded mode, on a template tree written by the
 * tests. */
#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/templates.h"

#define FILE_NAME "t.mustache"

static char g_dir[512];

static void write_file(const char *rel, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_dir, rel);
    for (char *p = path + strlen(g_dir) + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            cr_assert(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s", path);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void remove_file(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_dir, rel);
    cr_assert_eq(unlink(path), 0, "unlink %s", path);
}

/* A fresh tree per test: Criterion may run the tests of this file in
 * parallel processes, and some tests change files. */
static void make_tree(const char *test)
{
    char cmd[700];
    snprintf(g_dir, sizeof g_dir, "%s/test-templates-%s-%d", CRM_BINARY_DIR, test, (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_assert_eq(system(cmd), 0);
    cr_assert(mkdir(g_dir, 0755) == 0, "mkdir %s", g_dir);
    write_file("greet/en/" FILE_NAME, "Hello {{name}}{{> sig}}");
    write_file("greet/fr/" FILE_NAME, "Bonjour {{name}}");
    write_file("greet/zh-Hant/" FILE_NAME, "Nihao {{name}}");
    write_file("greet/de-CH/" FILE_NAME, "Grüezi {{name}}");
    write_file("greet/en/other.mustache", "another channel's file");
    write_file("otheronly/en/other.mustache", "x");
    write_file("broken/en/" FILE_NAME, "Hi {{#unclosed}}\n");
    write_file("_partials/sig.mustache", " -- {{company}}");
    write_file("_partials/nested.mustache", "[{{> sig}}]");
}

static void drop_tree(void)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_expect_eq(system(cmd), 0);
}

static cmn_templates_t *open_lazy(void)
{
    char err[256] = "";
    cmn_templates_opts_t opts = {.dir = g_dir, .fallback_locale = "en"};
    cmn_templates_t *t = cmn_templates_new(&opts, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    return t;
}

/* Finds name for locale and renders it with data; returns the render's rc
 * (or the lookup's), the text in out and the locale in used. */
static int find_render(cmn_templates_t *t, const char *name, const char *locale, const char *json, int escape,
                       cmn_buf_t *out, char used[CMN_TEMPLATES_LOCALE_MAX + 1])
{
    char err[256] = "";
    const char *text = NULL;
    cmn_templates_lease_t lease = {0};
    json_object *data = json_tokener_parse(json);
    cmn_buf_reset(out);
    int rc = cmn_templates_find(t, name, locale, FILE_NAME, &lease, &text, used);
    if (rc == 0 && text == NULL)
        rc = CMN_ERR_NOTFOUND;
    if (rc == 0)
        rc = cmn_templates_render(t, text, strlen(text), data, escape, &lease, out, err, sizeof err);
    if (rc == 0)
        rc = cmn_buf_puts(out, "");
    cmn_templates_lease_release(&lease);
    json_object_put(data);
    return rc;
}

Test(templates, locale_chain)
{
    char chain[CMN_TEMPLATES_CHAIN_MAX][CMN_TEMPLATES_LOCALE_MAX + 1];
    size_t n = cmn_templates_locale_chain("zh-hant-tw", "en", chain, CMN_TEMPLATES_CHAIN_MAX);
    cr_assert_eq(n, 4);
    cr_expect_str_eq(chain[0], "zh-Hant-TW", "the tag is normalised");
    cr_expect_str_eq(chain[1], "zh-Hant");
    cr_expect_str_eq(chain[2], "zh");
    cr_expect_str_eq(chain[3], "en");
    cr_expect_eq(cmn_templates_locale_chain("en-GB", "en", chain, CMN_TEMPLATES_CHAIN_MAX), 2,
                 "the fallback is not listed twice");
    cr_expect_eq(cmn_templates_locale_chain(NULL, "EN", chain, CMN_TEMPLATES_CHAIN_MAX), 1);
    cr_expect_str_eq(chain[0], "en", "the fallback is normalised");
    cr_expect_eq(cmn_templates_locale_chain("not a locale!", "en", chain, CMN_TEMPLATES_CHAIN_MAX), 1);
    n = cmn_templates_locale_chain("zh-Hant-TW", "en", chain, 3);
    cr_assert_eq(n, 3, "the chain never overflows");
    cr_expect_str_eq(chain[2], "en", "the fallback keeps its slot");
    cr_expect_eq(cmn_templates_locale_chain("fr", "en", chain, 0), 0);
}

Test(templates, fallback_chain_picks_the_first_locale_with_the_file)
{
    make_tree("chain");
    cmn_templates_t *t = open_lazy();
    cmn_buf_t out = CMN_BUF_INIT;
    char used[CMN_TEMPLATES_LOCALE_MAX + 1];
    const char *data = "{\"name\":\"Ana\",\"company\":\"Acme\"}";

    cr_assert_eq(find_render(t, "greet", "fr-CA", data, 0, &out, used), 0);
    cr_expect_str_eq(out.data, "Bonjour Ana", "fr-CA has no file: its language fr serves");
    cr_expect_str_eq(used, "fr");
    cr_assert_eq(find_render(t, "greet", "de-CH", data, 0, &out, used), 0);
    cr_expect_str_eq(used, "de-CH", "the exact locale wins");
    cr_assert_eq(find_render(t, "greet", "zh-hant-tw", data, 0, &out, used), 0);
    cr_expect_str_eq(used, "zh-Hant");
    cr_assert_eq(find_render(t, "greet", "ja", data, 0, &out, used), 0);
    cr_expect_str_eq(used, "en", "an unknown locale falls back");
    cr_expect_str_eq(out.data, "Hello Ana -- Acme");
    cr_assert_eq(find_render(t, "greet", NULL, data, 0, &out, used), 0);
    cr_expect_str_eq(used, "en", "no locale: the fallback");
    cr_assert_eq(find_render(t, "greet", "de", data, 0, &out, used), 0);
    cr_expect_str_eq(used, "en", "a region's directory does not serve the bare language");

    cmn_buf_free(&out);
    cmn_templates_destroy(t);
    drop_tree();
}

Test(templates, missing_files_and_bad_names)
{
    make_tree("missing");
    cmn_templates_t *t = open_lazy();
    const char *text = "unset";
    char used[CMN_TEMPLATES_LOCALE_MAX + 1];

    cr_assert_eq(cmn_templates_find(t, "nosuch", "fr-CA", FILE_NAME, NULL, &text, used), 0);
    cr_expect_null(text, "a missing file is not an error for the loader: the caller decides");
    cr_expect_str_eq(used, "fr-CA", "the first locale of the chain names the miss");
    cr_assert_eq(cmn_templates_find(t, "otheronly", "en", FILE_NAME, NULL, &text, used), 0);
    cr_expect_null(text, "another channel's file does not count");
    cr_assert_eq(cmn_templates_get(t, "greet", "en", "other.mustache", NULL, &text), 0);
    cr_expect_str_eq(text, "another channel's file", "the file name is the caller's");

    const char *bad[] = {"../greet", "a/b", ".hidden", "_partials", "", "a b", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(cmn_templates_find(t, bad[i], "en", FILE_NAME, NULL, &text, used), CMN_ERR_INVALID, "%s",
                     bad[i] != NULL ? bad[i] : "(null)");
        cr_expect_null(text);
    }
    cr_expect_eq(cmn_templates_get(t, "greet", "../en", FILE_NAME, NULL, &text), CMN_ERR_INVALID);
    cr_expect_eq(cmn_templates_get(t, "greet", "en", "../x", NULL, &text), CMN_ERR_INVALID);
    cr_expect_eq(cmn_templates_get(t, "greet", "en", ".x", NULL, &text), CMN_ERR_INVALID);
    cr_expect(cmn_templates_valid_name("body.txt.mustache"));
    cr_expect(!cmn_templates_valid_name(".x"));
    cr_expect(!cmn_templates_valid_name("a/b"));
    cr_expect(!cmn_templates_valid_name(NULL));

    char err[256] = "";
    cmn_templates_opts_t opts = {.dir = "/nonexistent/dir", .fallback_locale = "en"};
    cr_expect_null(cmn_templates_new(&opts, err, sizeof err));
    cr_expect_str_eq(err, "/nonexistent/dir: not a readable directory");
    opts.dir = g_dir;
    opts.fallback_locale = "not a locale";
    cr_expect_null(cmn_templates_new(&opts, err, sizeof err));
    opts.fallback_locale = "en";
    opts.preload_file = "../x";
    cr_expect_null(cmn_templates_new(&opts, err, sizeof err));
    cmn_templates_destroy(NULL);

    cmn_templates_destroy(t);
    drop_tree();
}

Test(templates, oversized_files_are_refused)
{
    make_tree("size");
    write_file("big/en/" FILE_NAME, "0123456789abcdef!");
    char err[256] = "";
    cmn_templates_opts_t opts = {.dir = g_dir, .fallback_locale = "en", .max_bytes = 16};
    cmn_templates_t *t = cmn_templates_new(&opts, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    const char *text = NULL;
    char used[CMN_TEMPLATES_LOCALE_MAX + 1];
    cr_expect_eq(cmn_templates_find(t, "big", "en", FILE_NAME, NULL, &text, used), CMN_ERR_OVERFLOW);
    cr_expect_str_eq(used, "en", "the failing locale is named");
    cr_expect_eq(cmn_templates_find(t, "greet", "fr", FILE_NAME, NULL, &text, used), 0);
    cr_expect_str_eq(text, "Bonjour {{name}}");
    cmn_templates_destroy(t);
    drop_tree();
}

Test(templates, partials)
{
    make_tree("partials");
    write_file("p/en/" FILE_NAME, "{{> nested}}|{{> nosuch}}|{{> ../greet}}|{{> .hidden}}");
    write_file("_partials/.hidden.mustache", "secret");
    cmn_templates_t *t = open_lazy();
    cmn_buf_t out = CMN_BUF_INIT;
    char used[CMN_TEMPLATES_LOCALE_MAX + 1];

    cr_assert_eq(find_render(t, "p", "en", "{\"company\":\"Acme\"}", 0, &out, used), 0);
    cr_expect_str_eq(out.data, "[ -- Acme]|||", "nested partials render; missing and unsafe names are empty");
    cr_expect_str_eq(cmn_templates_partial(t, "sig", NULL), " -- {{company}}");
    cr_expect_null(cmn_templates_partial(t, "nosuch", NULL));
    cr_expect_null(cmn_templates_partial(t, "a/b", NULL));

    cmn_buf_free(&out);
    cmn_templates_destroy(t);
    drop_tree();
}

Test(templates, cache_keeps_what_it_loaded)
{
    make_tree("cache");
    cmn_templates_t *t = open_lazy();
    cmn_buf_t out = CMN_BUF_INIT;
    char used[CMN_TEMPLATES_LOCALE_MAX + 1];
    const char *data = "{\"name\":\"Ana\",\"company\":\"Acme\"}";

    cr_assert_eq(find_render(t, "greet", "it", data, 0, &out, used), 0);
    cr_expect_str_eq(used, "en");
    /* Change, remove and add files: the running object keeps what it saw,
     * found and missing alike. */
    remove_file("greet/en/" FILE_NAME);
    write_file("_partials/sig.mustache", "changed");
    write_file("greet/it/" FILE_NAME, "Ciao {{name}}");
    cr_assert_eq(find_render(t, "greet", "it", data, 0, &out, used), 0);
    cr_expect_str_eq(used, "en", "a locale found missing stays missing");
    cr_expect_str_eq(out.data, "Hello Ana -- Acme");

    const char *a = NULL, *b = NULL;
    cr_assert_eq(cmn_templates_get(t, "greet", "fr", FILE_NAME, NULL, &a), 0);
    cr_assert_eq(cmn_templates_get(t, "greet", "fr", FILE_NAME, NULL, &b), 0);
    cr_expect_eq(a, b, "a cached text is handed out, not read again");
    cmn_templates_destroy(t);

    t = open_lazy();
    cr_assert_eq(find_render(t, "greet", "it", data, 0, &out, used), 0);
    cr_expect_str_eq(used, "it", "a new instance (a restart) sees the new files");
    cr_expect_str_eq(out.data, "Ciao Ana");

    cmn_buf_free(&out);
    cmn_templates_destroy(t);
    drop_tree();
}

/* Past the cache bound lookups still work: texts go to the caller's lease
 * and are freed with it. */
Test(templates, full_cache_parks_texts_in_the_lease)
{
    make_tree("full");
    cmn_templates_t *t = open_lazy();
    const char *text = NULL;
    char loc[16];
    for (int i = 0; i < 1100; i++) {
        snprintf(loc, sizeof loc, "x%d", i); /* valid path components, never found */
        cr_assert_eq(cmn_templates_get(t, "greet", loc, FILE_NAME, NULL, &text), 0);
        cr_assert_null(text);
    }
    cmn_templates_lease_t lease = {0};
    cr_assert_eq(cmn_templates_get(t, "greet", "de-CH", FILE_NAME, &lease, &text), 0);
    cr_expect_str_eq(text, "Grüezi {{name}}");
    cr_expect_eq(lease.n, 1, "the uncached text is parked in the lease");
    cr_expect_eq(cmn_templates_get(t, "greet", "fr", FILE_NAME, NULL, &text), CMN_ERR_NOMEM,
                 "without a lease an uncached text cannot be handed out");
    cmn_templates_lease_release(&lease);
    cr_expect_eq(lease.n, 0);
    cmn_templates_destroy(t);
    drop_tree();
}

Test(templates, escaping_is_the_callers_choice)
{
    make_tree("escape");
    write_file("esc/en/" FILE_NAME, "{{v}}|{{{v}}}");
    cmn_templates_t *t = open_lazy();
    cmn_buf_t out = CMN_BUF_INIT;
    char used[CMN_TEMPLATES_LOCALE_MAX + 1];
    const char *data = "{\"v\":\"<a href='x'>Tom & \\\"J\\\"</a>\"}";

    cr_assert_eq(find_render(t, "esc", "en", data, 1, &out, used), 0);
    cr_expect_str_eq(out.data, "&lt;a href=&#39;x&#39;&gt;Tom &amp; &quot;J&quot;&lt;/a&gt;|<a href='x'>Tom & \"J\"</a>");
    cr_assert_eq(find_render(t, "esc", "en", data, 0, &out, used), 0);
    cr_expect_str_eq(out.data, "<a href='x'>Tom & \"J\"</a>|<a href='x'>Tom & \"J\"</a>");

    char err[256] = "";
    const char *text = NULL;
    cr_assert_eq(cmn_templates_get(t, "broken", "en", FILE_NAME, NULL, &text), 0);
    cmn_buf_reset(&out);
    cr_expect_eq(cmn_templates_render(t, text, strlen(text), NULL, 0, NULL, &out, err, sizeof err), CMN_ERR_TEMPLATE);
    cr_expect_not_null(strstr(err, "line 1"), "%s", err);
    cr_expect_eq(out.len, 0, "nothing is appended on error");

    cmn_buf_free(&out);
    cmn_templates_destroy(t);
    drop_tree();
}

Test(templates, preload_loads_everything_and_then_never_reads)
{
    make_tree("preload");
    remove_file("broken/en/" FILE_NAME);
    write_file("greet/pt-br/" FILE_NAME, "Olá {{name}}");
    char err[256] = "";
    cmn_templates_opts_t opts = {.dir = g_dir, .fallback_locale = "en", .preload_file = FILE_NAME};
    cmn_templates_t *t = cmn_templates_new(&opts, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_expect_eq(cmn_templates_preloaded(t), 5, "greet in en, fr, zh-Hant, de-CH and pt-BR");

    cmn_buf_t out = CMN_BUF_INIT;
    char used[CMN_TEMPLATES_LOCALE_MAX + 1];
    write_file("greet/it/" FILE_NAME, "Ciao {{name}}");
    write_file("_partials/late.mustache", "late");
    cr_assert_eq(find_render(t, "greet", "it", "{\"name\":\"Ana\",\"company\":\"Acme\"}", 0, &out, used), 0);
    cr_expect_str_eq(used, "en", "files added after the start are not read");
    cr_expect_str_eq(out.data, "Hello Ana -- Acme", "partials were preloaded");
    cr_expect_null(cmn_templates_partial(t, "late", NULL));
    cr_assert_eq(find_render(t, "greet", "pt-BR", "{\"name\":\"Ana\"}", 0, &out, used), 0);
    cr_expect_str_eq(used, "pt-BR", "locale directories are normalised");
    cmn_buf_free(&out);
    cmn_templates_destroy(t);

    write_file("broken/en/" FILE_NAME, "Hi {{#unclosed}}\n");
    cr_expect_null(cmn_templates_new(&opts, err, sizeof err), "a template that does not parse stops the start");
    cr_expect_not_null(strstr(err, "broken/en/" FILE_NAME ": line"), "%s", err);
    drop_tree();
}

Test(templates, data_merges_context_and_the_validated_recipient)
{
    json_object *ctx = json_tokener_parse("{\"amount\":\"9 EUR\",\"recipient\":{\"name\":\"Forged\",\"vip\":true}}");
    cmn_recipient_t r = {0};
    r.name = "Ana";
    r.email = "ana@example.com";
    r.phone = "+33612345678";
    r.whatsapp = "+33612345679";
    r.locale = "fr";

    json_object *d = cmn_templates_data_new(ctx, &r, CMN_CHANNEL_EMAIL);
    cr_assert_not_null(d);
    json_object *rec = json_object_object_get(d, "recipient");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(d, "amount")), "9 EUR");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(rec, "name")), "Ana", "validated name wins");
    cr_expect(json_object_get_boolean(json_object_object_get(rec, "vip")), "context.recipient members kept");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(rec, "email")), "ana@example.com");
    cr_expect_null(json_object_object_get(rec, "phone"), "only the channel's own address");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(rec, "locale")), "fr");
    json_object_put(d);

    d = cmn_templates_data_new(ctx, &r, CMN_CHANNEL_SMS);
    rec = json_object_object_get(d, "recipient");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(rec, "phone")), "+33612345678");
    cr_expect_null(json_object_object_get(rec, "email"));
    json_object_put(d);

    d = cmn_templates_data_new(ctx, &r, CMN_CHANNEL_NONE);
    rec = json_object_object_get(d, "recipient");
    cr_expect_null(json_object_object_get(rec, "email"));
    cr_expect_null(json_object_object_get(rec, "phone"));
    cr_expect_null(json_object_object_get(rec, "whatsapp"));
    json_object_put(d);

    d = cmn_templates_data_new(NULL, NULL, CMN_CHANNEL_EMAIL);
    cr_assert_not_null(d, "no context and no recipient still give an object");
    cr_expect(json_object_is_type(json_object_object_get(d, "recipient"), json_type_object));
    json_object_put(d);
    json_object_put(ctx);
}
