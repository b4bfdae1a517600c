/* Unit tests of email template resolution and rendering
 * (services/email-worker/email_templates.c), on template trees written by
 * the tests and on the repository's own templates/. */
#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crm/err.h"
#include "crm/json.h"
#include "email_mime.h"
#include "email_templates.h"

static char g_dir[512];

static void write_file(const char *rel, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_dir, rel);
    /* mkdir -p of the parent */
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

static void make_tree(void)
{
    /* Per process: Criterion may run the tests of this file in parallel. */
    snprintf(g_dir, sizeof g_dir, "%s/test-email-templates-%d", CRM_BINARY_DIR, (int)getpid());
    cr_assert(mkdir(g_dir, 0755) == 0 || errno == EEXIST, "mkdir %s", g_dir);
    write_file("greet/en/subject.mustache", "Hello {{recipient.name}}\n");
    write_file("greet/en/body.txt.mustache", "Hi {{recipient.name}} ({{recipient.locale}})\n{{> footer}}\n");
    write_file("greet/en/body.html.mustache", "<p>Hi {{recipient.name}}</p>\n<p>{{> footer}}</p>\n");
    write_file("greet/fr/subject.mustache", "Bonjour {{recipient.name}}\r\n");
    write_file("greet/fr/body.txt.mustache", "Salut {{recipient.name}}\n");
    write_file("greet/fr/body.html.mustache", "<p>Salut {{recipient.name}}</p>\n");
    write_file("greet/fr-CA/subject.mustache", "Allô {{recipient.name}}\n");
    write_file("greet/fr-CA/body.txt.mustache", "Allô {{recipient.name}}\n");
    /* fr-CA deliberately has no HTML template: a text-only email. */
    write_file("greet/zh-Hant/subject.mustache", "你好 {{recipient.name}}\n");
    write_file("greet/zh-Hant/body.txt.mustache", "你好\n");
    write_file("broken/en/subject.mustache", "Hello {{#unclosed}}\n");
    write_file("broken/en/body.txt.mustache", "x\n");
    write_file("halfset/en/subject.mustache", "only a subject\n");
    write_file("_partials/footer.mustache", "{{company.name}} & friends");
}

static void remove_tree(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(email_templates, .init = make_tree, .fini = remove_tree);

static json_object *data_with(const char *name, const char *locale)
{
    cmn_recipient_t r = {0};
    r.name = (char *)name;
    r.locale = (char *)locale;
    json_object *ctx = json_tokener_parse("{\"company\":{\"name\":\"Acme <Health>\"},\"amount\":\"42 €\"}");
    json_object *data = email_templates_data_new(ctx, &r, NULL);
    json_object_put(ctx);
    cr_assert_not_null(data);
    return data;
}

static int render(email_templates_t *t, const char *name, const char *locale, json_object *data,
                  email_rendered_t *out)
{
    char err[256] = "";
    memset(out, 0, sizeof *out);
    return email_templates_render(t, name, locale, data, out, err, sizeof err);
}

Test(email_templates, locale_chain)
{
    char chain[EMAIL_LOCALE_CHAIN_MAX][EMAIL_LOCALE_MAX + 1];
    size_t n = email_templates_locale_chain("fr-CA", "en", chain, EMAIL_LOCALE_CHAIN_MAX);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(chain[0], "fr-CA");
    cr_assert_str_eq(chain[1], "fr");
    cr_assert_str_eq(chain[2], "en");

    n = email_templates_locale_chain("zh-hant-tw", "en", chain, EMAIL_LOCALE_CHAIN_MAX);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(chain[0], "zh-Hant-TW");
    cr_assert_str_eq(chain[1], "zh-Hant");
    cr_assert_str_eq(chain[2], "zh");
    cr_assert_str_eq(chain[3], "en");

    n = email_templates_locale_chain("en-US", "en", chain, EMAIL_LOCALE_CHAIN_MAX);
    cr_assert_eq(n, 2, "the fallback is not listed twice");

    n = email_templates_locale_chain(NULL, "de", chain, EMAIL_LOCALE_CHAIN_MAX);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(chain[0], "de");

    n = email_templates_locale_chain("../../etc", "en", chain, EMAIL_LOCALE_CHAIN_MAX);
    cr_assert_eq(n, 1, "a malformed locale only yields the fallback");
    cr_assert_str_eq(chain[0], "en");
}

Test(email_templates, fallback_chain_picks_the_closest_locale)
{
    char err[256];
    email_templates_t *t = email_templates_new(g_dir, "en", err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    json_object *data = data_with("Ana", "fr-CA");
    email_rendered_t r;

    cr_assert_eq(render(t, "greet", "fr-CA", data, &r), 0);
    cr_assert_str_eq(r.locale, "fr-CA");
    cr_assert_str_eq(r.subject, "Allô Ana");
    cr_assert_null(r.html, "fr-CA has no HTML template");
    email_rendered_clear(&r);

    cr_assert_eq(render(t, "greet", "fr-BE", data, &r), 0);
    cr_assert_str_eq(r.locale, "fr");
    cr_assert_str_eq(r.subject, "Bonjour Ana", "the CRLF ending the subject file is dropped");
    email_rendered_clear(&r);

    cr_assert_eq(render(t, "greet", "de-AT", data, &r), 0);
    cr_assert_str_eq(r.locale, "en");
    email_rendered_clear(&r);

    cr_assert_eq(render(t, "greet", "zh-Hant-TW", data, &r), 0);
    cr_assert_str_eq(r.locale, "zh-Hant");
    email_rendered_clear(&r);

    cr_assert_eq(render(t, "greet", NULL, data, &r), 0);
    cr_assert_str_eq(r.locale, "en");
    email_rendered_clear(&r);

    json_object_put(data);
    email_templates_destroy(t);
}

Test(email_templates, fallback_locale_is_configurable)
{
    char err[256];
    email_templates_t *t = email_templates_new(g_dir, "fr", err, sizeof err);
    cr_assert_not_null(t);
    json_object *data = data_with("Ana", NULL);
    email_rendered_t r;
    cr_assert_eq(render(t, "greet", "de", data, &r), 0);
    cr_assert_str_eq(r.locale, "fr");
    email_rendered_clear(&r);
    json_object_put(data);
    email_templates_destroy(t);

    t = email_templates_new(g_dir, "de", err, sizeof err);
    cr_assert_not_null(t);
    data = data_with("Ana", NULL);
    cr_assert_eq(render(t, "greet", "it", data, &r), CMN_ERR_NOTFOUND, "no it, no de: nothing to send");
    email_rendered_clear(&r);
    json_object_put(data);
    email_templates_destroy(t);

    cr_assert_null(email_templates_new(g_dir, "not a locale", err, sizeof err));
    cr_assert_null(email_templates_new("/nonexistent/templates", "en", err, sizeof err));
}

Test(email_templates, missing_template_is_notfound)
{
    char err[256] = "";
    email_templates_t *t = email_templates_new(g_dir, "en", err, sizeof err);
    json_object *data = data_with("Ana", NULL);
    email_rendered_t r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(email_templates_render(t, "no_such_type", "fr", data, &r, err, sizeof err), CMN_ERR_NOTFOUND);
    cr_assert_not_null(strstr(err, "no templates for no_such_type"), "%s", err);
    email_rendered_clear(&r);
    /* Names that would escape the directory, or reach the partials, are refused. */
    const char *bad[] = {"../greet", "greet/../greet", ".hidden", "_partials", "", "a b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(render(t, bad[i], "en", data, &r), CMN_ERR_INVALID, "%s", bad[i]);
        email_rendered_clear(&r);
    }
    json_object_put(data);
    email_templates_destroy(t);
}

Test(email_templates, broken_sets_are_template_errors)
{
    char err[256] = "";
    email_templates_t *t = email_templates_new(g_dir, "en", err, sizeof err);
    json_object *data = data_with("Ana", NULL);
    email_rendered_t r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(email_templates_render(t, "broken", "en", data, &r, err, sizeof err), CMN_ERR_TEMPLATE);
    cr_assert_not_null(strstr(err, "subject"), "%s", err);
    email_rendered_clear(&r);
    cr_assert_eq(render(t, "halfset", "en", data, &r), CMN_ERR_TEMPLATE, "a subject without a body");
    email_rendered_clear(&r);
    json_object_put(data);
    email_templates_destroy(t);
}

Test(email_templates, html_escaping_only_in_html)
{
    char err[256];
    email_templates_t *t = email_templates_new(g_dir, "en", err, sizeof err);
    json_object *data = data_with("Tom & \"Jerry\" <b>", NULL);
    email_rendered_t r;
    cr_assert_eq(render(t, "greet", "en", data, &r), 0);
    cr_assert_str_eq(r.subject, "Hello Tom & \"Jerry\" <b>");
    /* A standalone partial tag takes its line's break with it (spec), and
     * this footer has none of its own. */
    cr_assert_str_eq(r.text, "Hi Tom & \"Jerry\" <b> ()\nAcme <Health> & friends");
    cr_assert_not_null(r.html);
    cr_assert_str_eq(r.html, "<p>Hi Tom &amp; &quot;Jerry&quot; &lt;b&gt;</p>\n<p>Acme &lt;Health&gt; & friends</p>\n");
    email_rendered_clear(&r);
    json_object_put(data);
    email_templates_destroy(t);
}

Test(email_templates, line_breaks_from_data_survive_into_the_subject)
{
    /* The subject template's own line break is trimmed, the data's is not:
     * the MIME builder must see it and refuse the message. */
    char err[256];
    email_templates_t *t = email_templates_new(g_dir, "en", err, sizeof err);
    json_object *data = data_with("Eve\r\nBcc: victim@example.com", NULL);
    email_rendered_t r;
    cr_assert_eq(render(t, "greet", "en", data, &r), 0);
    cr_assert_not_null(strstr(r.subject, "\r\nBcc:"));
    email_mime_error_t me = {0};
    cr_assert_neq(email_mime_check_header_value("subject", r.subject, &me), 0);
    cr_assert_str_eq(me.code, "header_injection");
    email_rendered_clear(&r);
    json_object_put(data);
    email_templates_destroy(t);
}

Test(email_templates, files_are_read_once)
{
    char err[256];
    email_templates_t *t = email_templates_new(g_dir, "en", err, sizeof err);
    json_object *data = data_with("Ana", NULL);
    email_rendered_t r;
    cr_assert_eq(render(t, "greet", "en", data, &r), 0);
    email_rendered_clear(&r);
    cr_assert_eq(render(t, "greet", "it", data, &r), 0); /* caches "it: absent" too */
    email_rendered_clear(&r);
    write_file("greet/en/subject.mustache", "Changed\n");
    write_file("greet/it/subject.mustache", "Ciao\n");
    write_file("greet/it/body.txt.mustache", "Ciao\n");
    write_file("_partials/footer.mustache", "changed footer");
    cr_assert_eq(render(t, "greet", "en", data, &r), 0);
    cr_assert_str_eq(r.subject, "Hello Ana", "a running worker keeps the templates it loaded");
    cr_assert_not_null(strstr(r.text, "Acme <Health> & friends"));
    email_rendered_clear(&r);
    cr_assert_eq(render(t, "greet", "it", data, &r), 0);
    cr_assert_str_eq(r.locale, "en");
    email_rendered_clear(&r);
    email_templates_destroy(t);

    t = email_templates_new(g_dir, "en", err, sizeof err);
    cr_assert_eq(render(t, "greet", "it", data, &r), 0);
    cr_assert_str_eq(r.locale, "it", "a new instance (a restart) sees the new files");
    email_rendered_clear(&r);
    json_object_put(data);
    email_templates_destroy(t);
}

Test(email_templates, data_merges_context_and_recipient)
{
    cmn_recipient_t r = {0};
    r.name = "Ana";
    r.email = "ana@example.com";
    r.locale = "pt-BR";
    json_object *ctx = json_tokener_parse("{\"amount\":12,\"recipient\":{\"name\":\"Spoof\",\"title\":\"Dr\"}}");
    json_object *data = email_templates_data_new(ctx, &r, NULL);
    json_object_put(ctx); /* data keeps its own references */
    json_object *rec = cmn_json_get_object(data, "recipient");
    cr_assert_str_eq(cmn_json_get_string(rec, "name"), "Ana", "the dispatch recipient wins");
    cr_assert_str_eq(cmn_json_get_string(rec, "title"), "Dr");
    cr_assert_str_eq(cmn_json_get_string(rec, "email"), "ana@example.com");
    cr_assert_str_eq(cmn_json_get_string(rec, "locale"), "pt-BR");
    int64_t amount = 0;
    cr_assert_eq(cmn_json_get_int64(data, "amount", &amount), 0);
    cr_assert_eq(amount, 12);
    cr_assert_null(cmn_json_get_string(data, "unsubscribe_url"), "none unless the worker gives one");
    json_object_put(data);

    data = email_templates_data_new(NULL, NULL, NULL);
    cr_assert_not_null(cmn_json_get_object(data, "recipient"));
    json_object_put(data);
}

Test(email_templates, unsubscribe_url_is_the_workers)
{
    /* A producer's own "unsubscribe_url" never reaches the template: the
     * visible link must be the signed one. */
    json_object *ctx = json_tokener_parse("{\"unsubscribe_url\":\"https://evil.example/\",\"amount\":1}");
    json_object *data = email_templates_data_new(ctx, NULL, "https://hooks.example.com/u/AQID");
    cr_assert_not_null(data);
    cr_expect_str_eq(cmn_json_get_string(data, "unsubscribe_url"), "https://hooks.example.com/u/AQID");
    cr_expect_str_eq(cmn_json_get_string(ctx, "unsubscribe_url"), "https://evil.example/", "context untouched");
    json_object_put(data);
    data = email_templates_data_new(ctx, NULL, NULL);
    cr_expect_null(cmn_json_get_string(data, "unsubscribe_url"));
    json_object_put(data);
    json_object_put(ctx);

    /* And it renders, escaped in HTML like any value. */
    char dir[] = "/tmp/crm-tpl-unsub-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/news", dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/news/en", dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    const char *files[][2] = {{"subject.mustache", "News\n"},
                              {"body.txt.mustache", "Unsubscribe: {{unsubscribe_url}}\n"},
                              {"body.html.mustache", "<a href=\"{{unsubscribe_url}}\">Unsubscribe</a>\n"}};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/news/en/%s", dir, files[i][0]);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(files[i][1], f);
        fclose(f);
    }
    char err[256] = "";
    email_templates_t *t = email_templates_new(dir, "en", err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    data = email_templates_data_new(NULL, NULL, "https://hooks.example.com/u/A&B");
    email_rendered_t r;
    cr_assert_eq(render(t, "news", "en", data, &r), 0);
    cr_expect_str_eq(r.text, "Unsubscribe: https://hooks.example.com/u/A&B\n");
    cr_expect_str_eq(r.html, "<a href=\"https://hooks.example.com/u/A&amp;B\">Unsubscribe</a>\n");
    email_rendered_clear(&r);
    json_object_put(data);
    email_templates_destroy(t);
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/news/en/%s", dir, files[i][0]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/news/en", dir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/news", dir);
    rmdir(path);
    rmdir(dir);
}

typedef struct thread_arg {
    email_templates_t *t;
    int failures;
} thread_arg_t;

static void *render_many(void *p)
{
    thread_arg_t *a = p;
    const char *locales[] = {"en", "fr", "fr-CA", "de", "zh-Hant-TW"};
    json_object *data = data_with("Ana", NULL);
    for (int i = 0; i < 200; i++) {
        email_rendered_t r;
        if (render(a->t, "greet", locales[i % 5], data, &r) != 0 || r.subject == NULL)
            a->failures++;
        email_rendered_clear(&r);
    }
    json_object_put(data);
    return NULL;
}

Test(email_templates, concurrent_rendering)
{
    char err[256];
    email_templates_t *t = email_templates_new(g_dir, "en", err, sizeof err);
    pthread_t th[4];
    thread_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg_t){t, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, render_many, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].failures, 0);
    }
    email_templates_destroy(t);
}

/* ------------------------------------------ the repository's templates */

Test(email_templates_repo, every_shipped_template_renders)
{
    static const char *types[] = {"appointment_reminder", "payment_receipt", "event_invitation", "password_reset",
                                  "welcome"};
    static const char *locales[] = {"en", "fr", "es", "de"};
    char err[256] = "";
    char dir[512];
    snprintf(dir, sizeof dir, "%s/templates", CRM_SOURCE_DIR);
    email_templates_t *t = email_templates_new(dir, "en", err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    json_object *ctx = json_tokener_parse(
        "{\"appointment\":{\"date\":\"2026-11-24\",\"time\":\"14:30\",\"location\":\"Rue <Haute> & Co\","
        "\"with\":\"Dr Martin\",\"manage_url\":\"https://crm.example/a?x=1&y=2\"},"
        "\"amount\":\"42,00 €\",\"receipt\":{\"number\":\"R-1001\"},\"payment\":{\"date\":\"2026-11-22\"},"
        "\"receipt_url\":\"https://crm.example/r/1\",\"event\":{\"name\":\"Gala <2026> & friends\","
        "\"date\":\"2026-12-05\",\"location\":\"Hôtel de Ville\"},\"rsvp_url\":\"https://crm.example/rsvp\","
        "\"reset_url\":\"https://crm.example/reset?t=abc&u=1\",\"expires_in_minutes\":30,"
        "\"login_url\":\"https://crm.example/login\",\"company\":{\"name\":\"Acme & Sons\"}}");
    cmn_recipient_t rec = {0};
    rec.name = "Zoë <O'Brien>";
    json_object *data = email_templates_data_new(ctx, &rec, NULL);
    json_object_put(ctx);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        for (size_t k = 0; k < sizeof locales / sizeof locales[0]; k++) {
            email_rendered_t r;
            memset(&r, 0, sizeof r);
            int rc = email_templates_render(t, types[i], locales[k], data, &r, err, sizeof err);
            cr_assert_eq(rc, 0, "%s/%s: %s", types[i], locales[k], err);
            cr_assert_str_eq(r.locale, locales[k], "%s has no %s templates", types[i], locales[k]);
            cr_assert_gt(strlen(r.subject), 3);
            cr_assert_null(strpbrk(r.subject, "\r\n"), "%s/%s subject is not one line", types[i], locales[k]);
            cr_assert_null(strstr(r.subject, "{{"), "unrendered tag in %s/%s", types[i], locales[k]);
            cr_assert_not_null(r.html, "%s/%s has no HTML", types[i], locales[k]);
            cr_assert_not_null(strstr(r.html, "<html lang=\""), "%s/%s", types[i], locales[k]);
            cr_assert_not_null(strstr(r.html, "</html>"));
            /* The shared footer, escaped in HTML and not in text. */
            cr_assert_not_null(strstr(r.text, "Acme & Sons"), "%s/%s text lacks the footer", types[i], locales[k]);
            cr_assert_not_null(strstr(r.html, "Acme &amp; Sons"), "%s/%s html lacks the footer", types[i], locales[k]);
            cr_assert_null(strstr(r.html, "<O'Brien>"), "unescaped data in %s/%s html", types[i], locales[k]);
            cr_assert_null(strstr(r.html, "Acme & Sons"));
            cr_assert_null(strstr(r.text, "&amp;"), "escaped data in %s/%s text", types[i], locales[k]);
            email_rendered_clear(&r);
        }
    }
    json_object_put(data);
    email_templates_destroy(t);
}
