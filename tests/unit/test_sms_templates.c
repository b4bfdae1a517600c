/* Unit tests of SMS template resolution and rendering
 * (services/sms-worker/sms_templates.c), on a template tree written by the
 * tests and on the repository's own templates/. */
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
#include "sms_templates.h"

#define FILE_NAME "sms.txt.mustache"

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

static void make_tree(void)
{
    /* Per process: Criterion may run the tests of this file in parallel. */
    snprintf(g_dir, sizeof g_dir, "%s/test-sms-templates-%d", CRM_BINARY_DIR, (int)getpid());
    cr_assert(mkdir(g_dir, 0755) == 0 || errno == EEXIST, "mkdir %s", g_dir);
    write_file("greet/en/" FILE_NAME, "Hi {{recipient.name}} & co <b>{{> sig}}</b>\n\n");
    write_file("greet/fr/" FILE_NAME, "Salut {{recipient.name}}\r\n");
    write_file("greet/zh-Hant/" FILE_NAME, "你好 {{recipient.name}}\n");
    write_file("greet/en/subject.mustache", "an email file, not ours\n");
    write_file("emailonly/en/subject.mustache", "Hello\n");
    write_file("broken/en/" FILE_NAME, "Hello {{#unclosed}}\n");
    write_file("empty/en/" FILE_NAME, "{{#missing}}x{{/missing}}\n");
    write_file("_partials/sig.mustache", "{{company.name}}");
}

static json_object *data_for(const char *name)
{
    cmn_recipient_t r = {.name = (char *)name, .phone = "+33612345678", .locale = "fr"};
    json_object *ctx = json_tokener_parse("{\"company\":{\"name\":\"Ésope & Fils\"}}");
    json_object *d = sms_templates_data_new(ctx, &r);
    json_object_put(ctx);
    cr_assert_not_null(d);
    return d;
}

static int render(sms_templates_t *t, const char *name, const char *locale, json_object *data, cmn_buf_t *out,
                  char *used)
{
    char why[256] = "";
    return sms_templates_render(t, name, locale, data, out, used, why, sizeof why);
}

Test(sms_templates, locale_chain)
{
    char chain[SMS_LOCALE_CHAIN_MAX][SMS_LOCALE_MAX + 1];
    size_t n = sms_templates_locale_chain("zh-hant-tw", "en", chain, SMS_LOCALE_CHAIN_MAX);
    cr_assert_eq(n, 4);
    cr_expect_str_eq(chain[0], "zh-Hant-TW");
    cr_expect_str_eq(chain[1], "zh-Hant");
    cr_expect_str_eq(chain[2], "zh");
    cr_expect_str_eq(chain[3], "en");
    n = sms_templates_locale_chain("en-GB", "en", chain, SMS_LOCALE_CHAIN_MAX);
    cr_assert_eq(n, 2, "the fallback is not listed twice");
    n = sms_templates_locale_chain(NULL, "de", chain, SMS_LOCALE_CHAIN_MAX);
    cr_assert_eq(n, 1);
    cr_expect_str_eq(chain[0], "de");
    n = sms_templates_locale_chain("not a locale!", "de", chain, SMS_LOCALE_CHAIN_MAX);
    cr_assert_eq(n, 1);
    n = sms_templates_locale_chain("zh-Hant-TW", "en", chain, 3);
    cr_assert_eq(n, 3, "the chain never overflows");
    cr_expect_str_eq(chain[1], "zh-Hant");
    cr_expect_str_eq(chain[2], "en", "the fallback keeps its slot");
}

Test(sms_templates, renders_plain_text_with_fallbacks)
{
    char why[256] = "";
    char used[SMS_LOCALE_MAX + 1];
    make_tree();
    sms_templates_t *t = sms_templates_new(g_dir, FILE_NAME, "en", why, sizeof why);
    cr_assert_not_null(t, "%s", why);
    json_object *d = data_for("Zoë <Ana>");
    cmn_buf_t out = CMN_BUF_INIT;

    cr_assert_eq(render(t, "greet", "en-US", d, &out, used), 0);
    cr_expect_str_eq(out.data, "Hi Zoë <Ana> & co <b>Ésope & Fils</b>", "no HTML escaping, no trailing newline");
    cr_expect_str_eq(used, "en");
    cr_assert_eq(render(t, "greet", "fr-CA", d, &out, used), 0);
    cr_expect_str_eq(out.data, "Salut Zoë <Ana>");
    cr_expect_str_eq(used, "fr");
    cr_assert_eq(render(t, "greet", "zh-Hant-TW", d, &out, used), 0);
    cr_expect_str_eq(used, "zh-Hant");
    cr_assert_eq(render(t, "greet", "ja", d, &out, used), 0);
    cr_expect_str_eq(used, "en", "an unknown locale falls back");
    cr_assert_eq(render(t, "greet", NULL, d, &out, used), 0);
    cr_expect_str_eq(used, "en");
    cr_assert_eq(render(t, "empty", "en", d, &out, used), 0);
    cr_expect_str_eq(out.data, "", "an empty render is an empty string");
    /* Cached now: the files can go and rendering still works. */
    char path[1024];
    snprintf(path, sizeof path, "%s/greet/fr/" FILE_NAME, g_dir);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(render(t, "greet", "fr", d, &out, used), 0);
    cr_expect_str_eq(out.data, "Salut Zoë <Ana>");

    cmn_buf_free(&out);
    json_object_put(d);
    sms_templates_destroy(t);
}

Test(sms_templates, missing_broken_and_malformed)
{
    char why[256] = "";
    char used[SMS_LOCALE_MAX + 1];
    make_tree();
    sms_templates_t *t = sms_templates_new(g_dir, FILE_NAME, "en", why, sizeof why);
    cr_assert_not_null(t, "%s", why);
    json_object *d = data_for("Ana");
    cmn_buf_t out = CMN_BUF_INIT;

    why[0] = '\0';
    cr_expect_eq(sms_templates_render(t, "nosuch", "fr", d, &out, used, why, sizeof why), CMN_ERR_NOTFOUND);
    cr_expect_not_null(strstr(why, "nosuch"), "%s", why);
    cr_expect_eq(render(t, "emailonly", "en", d, &out, used), CMN_ERR_NOTFOUND, "an email-only type has no SMS");
    cr_expect_eq(render(t, "broken", "en", d, &out, used), CMN_ERR_TEMPLATE);
    const char *bad_names[] = {"../etc", "_partials", ".hidden", "a/b", "", NULL};
    for (size_t i = 0; bad_names[i] != NULL; i++)
        cr_expect_eq(render(t, bad_names[i], "en", d, &out, used), CMN_ERR_INVALID, "%s", bad_names[i]);
    cr_expect_eq(render(t, NULL, "en", d, &out, used), CMN_ERR_INVALID);

    cmn_buf_free(&out);
    json_object_put(d);
    sms_templates_destroy(t);

    cr_expect_null(sms_templates_new("/nonexistent/dir", FILE_NAME, "en", why, sizeof why));
    cr_expect_null(sms_templates_new(g_dir, "../x", "en", why, sizeof why));
    cr_expect_null(sms_templates_new(g_dir, FILE_NAME, "not a locale", why, sizeof why));
    sms_templates_destroy(NULL);
}

Test(sms_templates, recipient_overlay)
{
    cmn_recipient_t r = {.name = "Ana", .phone = "+33612345678"};
    json_object *ctx = json_tokener_parse("{\"recipient\":{\"name\":\"Forged\",\"nickname\":\"Ani\"},\"amount\":\"€5\"}");
    json_object *d = sms_templates_data_new(ctx, &r);
    json_object_put(ctx);
    cr_assert_not_null(d);
    json_object *rec = NULL;
    cr_assert(json_object_object_get_ex(d, "recipient", &rec));
    cr_expect_str_eq(json_object_get_string(json_object_object_get(rec, "name")), "Ana");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(rec, "nickname")), "Ani");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(rec, "phone")), "+33612345678");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(d, "amount")), "€5");
    json_object_put(d);
    d = sms_templates_data_new(NULL, NULL);
    cr_assert_not_null(d);
    json_object_put(d);
}

/* Every message type of the repository has an SMS template in every
 * supported locale, each renders with a realistic context, fits one
 * message's 1600-character limit and contains no line break. */
Test(sms_templates, repository_templates_render)
{
    static const char *const TYPES[] = {"appointment_reminder", "event_invitation", "password_reset",
                                        "payment_receipt", "welcome"};
    static const char *const LOCALES[] = {"en", "fr", "es", "de"};
    char why[256] = "";
    char used[SMS_LOCALE_MAX + 1];
    char dir[600];
    snprintf(dir, sizeof dir, "%s/templates", CRM_SOURCE_DIR);
    sms_templates_t *t = sms_templates_new(dir, FILE_NAME, "en", why, sizeof why);
    cr_assert_not_null(t, "%s", why);
    json_object *ctx = json_tokener_parse(
        "{\"company\":{\"name\":\"Clinique Ésope\"},\"appointment\":{\"date\":\"24/11/2026\",\"time\":\"14:30\","
        "\"location\":\"Cabinet Nord\",\"manage_url\":\"https://crm.example/a/1\"},\"event\":{\"name\":\"Gala\","
        "\"date\":\"05/12/2026\",\"time\":\"19:00\",\"location\":\"Opéra\"},\"rsvp_url\":\"https://crm.example/r\","
        "\"reset_url\":\"https://crm.example/reset?t=abc\",\"expires_in_minutes\":30,\"amount\":\"42,00 €\","
        "\"receipt\":{\"number\":\"R-1001\"},\"receipt_url\":\"https://crm.example/rc\","
        "\"login_url\":\"https://crm.example/login\"}");
    cmn_recipient_t r = {.name = "Ana", .phone = "+33612345678"};
    json_object *d = sms_templates_data_new(ctx, &r);
    json_object_put(ctx);
    cmn_buf_t out = CMN_BUF_INIT;
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) {
        for (size_t k = 0; k < sizeof LOCALES / sizeof LOCALES[0]; k++) {
            int rc = sms_templates_render(t, TYPES[i], LOCALES[k], d, &out, used, why, sizeof why);
            cr_assert_eq(rc, 0, "%s/%s: %s", TYPES[i], LOCALES[k], why);
            cr_expect_str_eq(used, LOCALES[k], "%s/%s fell back to %s", TYPES[i], LOCALES[k], used);
            cr_expect_gt(out.len, 20, "%s/%s: %s", TYPES[i], LOCALES[k], out.data);
            cr_expect_lt(out.len, 1600);
            cr_expect_null(strchr(out.data, '\n'), "%s/%s has a line break", TYPES[i], LOCALES[k]);
            cr_expect_null(strstr(out.data, "{{"), "%s/%s: %s", TYPES[i], LOCALES[k], out.data);
        }
    }
    cr_assert_eq(sms_templates_render(t, "welcome", "fr-FR", d, &out, used, why, sizeof why), 0);
    cr_expect_str_eq(out.data, "Bienvenue chez Clinique Ésope, Ana ! Votre compte est activé. "
                               "Connexion : https://crm.example/login");
    cmn_buf_free(&out);
    json_object_put(d);
    sms_templates_destroy(t);
}
