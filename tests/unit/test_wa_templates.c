/* test_wa_templates.c - what a WhatsApp dispatch turns into before it
 * reaches a provider: context.whatsapp (wa_content), the approved-template
 * map and its parameters (wa_templates, including the shipped
 * config/whatsapp_templates.json), and the free-text templates (wa_text,
 * including every shipped whatsapp.txt.mustache). */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/request.h"
#include "wa_content.h"
#include "wa_templates.h"
#include "wa_text.h"

static json_object *parse(const char *text)
{
    char err[256];
    json_object *o = cmn_json_parse(text, strlen(text), err, sizeof err);
    cr_assert_not_null(o, "bad test JSON (%s): %s", err, text);
    return o;
}

/* ------------------------------------------------------------- content */

/* Contexts whose strings a wa_content_t borrows, put when the test ends. */
static json_object *g_keep[64];
static size_t g_nkeep;

static void release_kept(void)
{
    for (size_t i = 0; i < g_nkeep; i++)
        json_object_put(g_keep[i]);
    g_nkeep = 0;
}

TestSuite(wa_content, .fini = release_kept);

static int content(const char *ctx, wa_content_t *c, char *err, size_t errlen)
{
    json_object *o = parse(ctx);
    int rc = wa_content_parse(o, c, err, errlen);
    /* Strings in c borrow from o: it lives until the test ends. */
    cr_assert_lt(g_nkeep, sizeof g_keep / sizeof g_keep[0]);
    g_keep[g_nkeep++] = o;
    return rc;
}

Test(wa_content, defaults_to_text)
{
    wa_content_t c;
    char err[256];
    cr_expect_eq(wa_content_parse(NULL, &c, err, sizeof err), 0);
    cr_expect_eq(c.kind, WA_CONTENT_TEXT);
    cr_expect_eq(content("{\"appointment\":{}}", &c, err, sizeof err), 0);
    cr_expect_eq(c.kind, WA_CONTENT_TEXT);
    cr_expect_eq(c.preview_url, 0);
    cr_expect_eq(content("{\"whatsapp\":{\"type\":\"template\"}}", &c, err, sizeof err), 0);
    cr_expect_eq(c.kind, WA_CONTENT_TEMPLATE);
}

Test(wa_content, refuses_bad_fields_by_name)
{
    wa_content_t c;
    char err[256];
    static const struct {
        const char *ctx, *msg;
    } CASES[] = {
        {"{\"whatsapp\":[]}", "context.whatsapp: must be an object"},
        {"{\"whatsapp\":{\"type\":\"sticker\"}}", "context.whatsapp.type: must be text, image, document, interactive or template"},
        {"{\"whatsapp\":{\"type\":\"text\",\"preview_url\":\"yes\"}}", "context.whatsapp.preview_url: must be true or false"},
        {"{\"whatsapp\":{\"type\":\"image\"}}", "context.whatsapp.link: is required"},
        {"{\"whatsapp\":{\"type\":\"image\",\"link\":\"file:///etc/passwd\"}}", "context.whatsapp.link: must be an http(s) URL without spaces, at most 2048 bytes"},
        {"{\"whatsapp\":{\"type\":\"document\",\"link\":\"https://x.example/a b.pdf\"}}", "context.whatsapp.link: must be an http(s) URL without spaces, at most 2048 bytes"},
        {"{\"whatsapp\":{\"type\":\"interactive\"}}", "context.whatsapp.interactive: must be an object"},
        {"{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"carousel\"}}}", "context.whatsapp.interactive.type: must be button or list"},
        {"{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"button\",\"buttons\":[]}}}", "context.whatsapp.interactive.buttons: must be an array of 1 to 3 buttons"},
        {"{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"button\",\"buttons\":[{\"id\":\"a\",\"title\":\"A\"},{\"id\":\"b\",\"title\":\"B\"},{\"id\":\"c\",\"title\":\"C\"},{\"id\":\"d\",\"title\":\"D\"}]}}}", "context.whatsapp.interactive.buttons: must be an array of 1 to 3 buttons"},
        {"{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"button\",\"buttons\":[{\"id\":\"a\",\"title\":\"This title is far too long\"}]}}}", "context.whatsapp.interactive.buttons[0].title: must be at most 20 characters"},
        {"{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"button\",\"buttons\":[{\"id\":\"a\",\"title\":\"A\"},{\"id\":\"a\",\"title\":\"B\"}]}}}", "context.whatsapp.interactive.buttons[1]: id and title must be unique"},
        {"{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"button\",\"header\":\"\",\"buttons\":[{\"id\":\"a\",\"title\":\"A\"}]}}}", "context.whatsapp.interactive.header: must not be empty"},
        {"{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"list\",\"sections\":[]}}}", "context.whatsapp.interactive.button: is required"},
        {"{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"list\",\"button\":\"Go\",\"sections\":[{\"rows\":[]}]}}}", "context.whatsapp.interactive.sections[0].title: is required"},
        {"{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"list\",\"button\":\"Go\",\"sections\":[{\"title\":\"S\",\"rows\":[]}]}}}", "context.whatsapp.interactive.sections[0].rows: must be a non-empty array of rows"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        cr_expect_eq(content(CASES[i].ctx, &c, err, sizeof err), CMN_ERR_INVALID, "%s", CASES[i].ctx);
        cr_expect_str_eq(err, CASES[i].msg, "%s", CASES[i].ctx);
    }
}

Test(wa_content, list_limits)
{
    wa_content_t c;
    char err[256];
    cmn_buf_t b = CMN_BUF_INIT;
    /* 11 rows across two sections: one too many. */
    cmn_buf_puts(&b, "{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"list\",\"button\":\"Go\",\"sections\":[");
    for (int s = 0; s < 2; s++) {
        cmn_buf_printf(&b, "%s{\"title\":\"S%d\",\"rows\":[", s ? "," : "", s);
        for (int r = 0; r < (s ? 5 : 6); r++)
            cmn_buf_printf(&b, "%s{\"id\":\"r%d-%d\",\"title\":\"Row\"}", r ? "," : "", s, r);
        cmn_buf_puts(&b, "]}");
    }
    cmn_buf_puts(&b, "]}}}");
    cr_expect_eq(content(b.data, &c, err, sizeof err), CMN_ERR_INVALID);
    cr_expect_str_eq(err, "context.whatsapp.interactive.sections: must hold at most 10 rows in all");
    cmn_buf_free(&b);

    const char *ok = "{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"list\",\"button\":\"Choose\","
                     "\"footer\":\"f\",\"sections\":[{\"title\":\"Mon\",\"rows\":[{\"id\":\"a\",\"title\":\"9:00\"},"
                     "{\"id\":\"b\",\"title\":\"10:00\",\"description\":\"d\"}]},{\"title\":\"Tue\",\"rows\":["
                     "{\"id\":\"c\",\"title\":\"9:00\"}]}]}}}";
    cr_assert_eq(content(ok, &c, err, sizeof err), 0, "%s", err);
    cr_expect_eq(c.kind, WA_CONTENT_LIST);
    cr_expect_eq(c.n_sections, 2);
    cr_expect_eq(c.n_rows, 3);
    cr_expect_eq(c.sections[1].first_row, 2);
    cr_expect_null(c.rows[0].description);
    cr_expect_str_eq(c.rows[1].description, "d");
    cr_expect_str_eq(c.footer, "f");
    cr_expect_null(c.header);
    /* Titles count characters, not bytes: 20 "é" are 20 characters. */
    char twenty[128] = "";
    for (int i = 0; i < 20; i++)
        strcat(twenty, "\xc3\xa9");
    char ctx[512];
    snprintf(ctx, sizeof ctx,
             "{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"button\",\"buttons\":[{\"id\":\"a\",\"title\":\"%s\"}]}}}",
             twenty);
    cr_expect_eq(content(ctx, &c, err, sizeof err), 0, "%s", err);
    cr_expect_eq(wa_utf8_chars(twenty), 20);
}

/* ----------------------------------------------------------- templates */

#define SHIPPED_MAP CRM_SOURCE_DIR "/config/whatsapp_templates.json"

Test(wa_templates, the_shipped_map_loads)
{
    char err[512] = "";
    wa_templates_t *t = wa_templates_load(SHIPPED_MAP, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    const char *types[] = {"appointment_reminder", "event_invitation", "payment_receipt", "password_reset"};
    for (size_t i = 0; i < 4; i++) {
        cr_expect(wa_templates_has(t, types[i], WA_TPL_META), "%s (meta)", types[i]);
        cr_expect(wa_templates_has(t, types[i], WA_TPL_TWILIO), "%s (twilio)", types[i]);
    }
    /* Welcome messages have no approved template on purpose (docs/whatsapp.md). */
    cr_expect(!wa_templates_has(t, "welcome", WA_TPL_META));
    cr_expect(!wa_templates_has(t, "nope", WA_TPL_META));
    cr_expect(!wa_templates_has(t, NULL, WA_TPL_META));

    json_object *data = parse("{\"appointment\":{\"date\":\"24/11/2026\",\"time\":\"14:30\"}}");
    wa_tpl_call_t call;
    cr_assert_eq(wa_templates_meta_call(t, "appointment_reminder", "fr-CA", data, &call, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(call.name, "appointment_reminder");
    cr_expect_str_eq(call.language, "fr", "fr-CA falls back to fr");
    cr_assert_eq(call.n_body, 3);
    cr_expect_str_eq(call.body[0], "24/11/2026");
    cr_expect_str_eq(call.body[1], "14:30");
    cr_expect_str_eq(call.body[2], "-", "the default of a missing location");
    cr_assert_eq(call.n_buttons, 2);
    cr_expect_eq(call.buttons[1].kind, WA_TPL_BUTTON_QUICK_REPLY);
    cr_expect_eq(call.buttons[1].index, 1);
    cr_expect_str_eq(call.buttons[1].value, "appointment_reschedule");
    wa_tpl_call_clear(&call);

    cr_assert_eq(wa_templates_meta_call(t, "appointment_reminder", "ja", data, &call, err, sizeof err), 0);
    cr_expect_str_eq(call.language, "en_US", "an unknown locale uses the fallback's language");
    wa_tpl_call_clear(&call);

    wa_tpl_twilio_call_t tw;
    cr_assert_eq(wa_templates_twilio_call(t, "appointment_reminder", "de", data, &tw, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(tw.content_sid, "HX00000000000000000000000000000a04");
    cr_expect_str_eq(tw.variables_json, "{\"1\":\"24/11/2026\",\"2\":\"14:30\",\"3\":\"-\"}");
    wa_tpl_twilio_call_clear(&tw);

    cr_expect_eq(wa_templates_meta_call(t, "welcome", "en", data, &call, err, sizeof err), CMN_ERR_NOTFOUND);
    wa_tpl_call_clear(&call);
    json_object_put(data);
    wa_templates_destroy(t);
}

Test(wa_templates, parameters)
{
    char err[512] = "";
    json_object *map = parse("{\"message_types\":{\"t\":{\"meta\":{\"name\":\"t_1\",\"languages\":{\"en\":\"en_US\"},"
                             "\"header\":{\"type\":\"image\",\"param\":\"img\"},"
                             "\"body\":[\"a.b\",\"n\",\"f\"],"
                             "\"buttons\":[{\"sub_type\":\"url\",\"index\":0,\"param\":\"tok\"}]}}}}");
    wa_templates_t *t = wa_templates_from_json(map, err, sizeof err);
    json_object_put(map);
    cr_assert_not_null(t, "%s", err);
    wa_tpl_call_t c;
    json_object *ok = parse("{\"img\":\"https://cdn.example/i.png\",\"a\":{\"b\":\"x\"},\"n\":42,\"f\":1.5,\"tok\":\"T1\"}");
    cr_assert_eq(wa_templates_meta_call(t, "t", NULL, ok, &c, err, sizeof err), 0, "%s", err);
    cr_expect_eq(c.header_kind, WA_TPL_HEADER_IMAGE);
    cr_expect_str_eq(c.header_value, "https://cdn.example/i.png");
    cr_expect_str_eq(c.body[1], "42", "numbers become text");
    cr_expect_str_eq(c.body[2], "1.5");
    cr_expect_eq(c.buttons[0].kind, WA_TPL_BUTTON_URL);
    cr_expect_str_eq(c.buttons[0].value, "T1");
    wa_tpl_call_clear(&c);
    json_object_put(ok);

    static const struct {
        const char *data, *msg;
    } BAD[] = {
        {"{\"img\":\"https://cdn.example/i.png\",\"a\":{},\"n\":1,\"f\":1,\"tok\":\"t\"}",
         "template parameter body[0] (a.b) is missing, empty, or not a string or number"},
        {"{\"img\":\"https://cdn.example/i.png\",\"a\":{\"b\":\"\"},\"n\":1,\"f\":1,\"tok\":\"t\"}",
         "template parameter body[0] (a.b) is missing, empty, or not a string or number"},
        {"{\"img\":\"https://cdn.example/i.png\",\"a\":{\"b\":[1]},\"n\":1,\"f\":1,\"tok\":\"t\"}",
         "template parameter body[0] (a.b) is missing, empty, or not a string or number"},
        {"{\"img\":\"https://cdn.example/i.png\",\"a\":{\"b\":\"two\\nlines\"},\"n\":1,\"f\":1,\"tok\":\"t\"}",
         "template parameter body[0] (a.b) holds a line break, a tab or more than 4 spaces in a row"},
        {"{\"img\":\"https://cdn.example/i.png\",\"a\":{\"b\":\"a     b\"},\"n\":1,\"f\":1,\"tok\":\"t\"}",
         "template parameter body[0] (a.b) holds a line break, a tab or more than 4 spaces in a row"},
        {"{\"img\":\"not a url\",\"a\":{\"b\":\"x\"},\"n\":1,\"f\":1,\"tok\":\"t\"}",
         "template parameter header (img) is not an http(s) URL"},
        {"{\"img\":\"https://cdn.example/i.png\",\"a\":{\"b\":\"x\"},\"n\":1,\"f\":1}",
         "template parameter buttons[0] (tok) is missing, empty, or not a string or number"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        json_object *d = parse(BAD[i].data);
        cr_expect_eq(wa_templates_meta_call(t, "t", "en", d, &c, err, sizeof err), CMN_ERR_INVALID, "%zu", i);
        cr_expect_str_eq(err, BAD[i].msg, "%zu", i);
        wa_tpl_call_clear(&c);
        json_object_put(d);
    }
    wa_templates_destroy(t);
}

Test(wa_templates, refuses_bad_maps_naming_the_member)
{
    static const struct {
        const char *doc, *msg;
    } BAD[] = {
        {"[]", "document: must be a JSON object"},
        {"{}", "message_types: must be an object of message type -> templates"},
        {"{\"fallback_locale\":\"x_y\",\"message_types\":{}}", "fallback_locale: must be a locale like en"},
        {"{\"message_types\":{\"../x\":{\"meta\":{}}}}", "message_types.../x: the key must be a message type or template name ([A-Za-z0-9_.-], not starting with .)"},
        {"{\"message_types\":{\"t\":{}}}", "message_types.t: needs a meta or a twilio template"},
        {"{\"message_types\":{\"t\":{\"mета\":{}}}}", "message_types.t.mета: unknown member (expected meta, twilio)"},
        {"{\"message_types\":{\"t\":{\"meta\":{\"name\":\"Bad Name\"}}}}", "message_types.t.meta.name: must be the approved template's name: lowercase letters, digits and _"},
        {"{\"message_types\":{\"t\":{\"meta\":{\"name\":\"ok\"}}}}", "message_types.t.meta.languages: must be a non-empty object of locale -> value"},
        {"{\"message_types\":{\"t\":{\"meta\":{\"name\":\"ok\",\"languages\":{\"en\":\"english\"}}}}}", "message_types.t.meta.languages.en: must be a Meta language code like en_US or fr"},
        {"{\"message_types\":{\"t\":{\"meta\":{\"name\":\"ok\",\"languages\":{\"en\":\"en\"},\"body\":[\"a..b\"]}}}}", "message_types.t.meta.body[0]: the data path must look like appointment.date (letters, digits, _ - .)"},
        {"{\"message_types\":{\"t\":{\"meta\":{\"name\":\"ok\",\"languages\":{\"en\":\"en\"},\"buttons\":[{\"sub_type\":\"quick_reply\",\"index\":0}]}}}}", "message_types.t.meta.buttons[0]: a quick_reply button needs a payload of 1 to 128 bytes"},
        {"{\"message_types\":{\"t\":{\"meta\":{\"name\":\"ok\",\"languages\":{\"en\":\"en\"},\"buttons\":[{\"sub_type\":\"url\",\"index\":0,\"param\":\"a\"},{\"sub_type\":\"url\",\"index\":0,\"param\":\"b\"}]}}}}", "message_types.t.meta.buttons[1]: index is used by another button"},
        {"{\"message_types\":{\"t\":{\"meta\":{\"name\":\"ok\",\"languages\":{\"en\":\"en\"},\"footer\":1}}}}", "message_types.t.meta.footer: unknown member (expected name, languages, header, body, buttons)"},
        {"{\"message_types\":{\"t\":{\"twilio\":{\"content_sids\":{\"en\":\"HX123\"}}}}}", "message_types.t.twilio.content_sids.en: must be a Content SID: HX and 32 hex digits"},
        {"{\"message_types\":{\"t\":{\"twilio\":{\"content_sids\":{\"en\":\"HX0123456789abcdef0123456789abcdef\"},\"variables\":{\"1\":{\"param\":\"a\",\"default\":\"\"}}}}}}", "message_types.t.twilio.variables.1.default: must be a non-empty string without line breaks, tabs or 5 spaces in a row"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        char err[512] = "";
        json_object *doc = parse(BAD[i].doc);
        wa_templates_t *t = wa_templates_from_json(doc, err, sizeof err);
        cr_expect_null(t, "%zu accepted", i);
        cr_expect_str_eq(err, BAD[i].msg, "%zu", i);
        wa_templates_destroy(t);
        json_object_put(doc);
    }
    char err[512] = "";
    cr_expect_null(wa_templates_load("/nonexistent/map.json", err, sizeof err));
    cr_expect_str_eq(err, "/nonexistent/map.json: cannot be opened");
}

Test(wa_templates, locale_chain)
{
    char chain[6][WA_TPL_LOCALE_MAX + 1];
    size_t n = wa_locale_chain("zh-hant-tw", "en", chain, 6);
    cr_assert_eq(n, 4);
    cr_expect_str_eq(chain[0], "zh-Hant-TW");
    cr_expect_str_eq(chain[1], "zh-Hant");
    cr_expect_str_eq(chain[2], "zh");
    cr_expect_str_eq(chain[3], "en");
    cr_expect_eq(wa_locale_chain("en-GB", "en", chain, 6), 2, "the fallback is not listed twice");
    cr_expect_eq(wa_locale_chain("not a locale", "en", chain, 6), 1);
    cr_expect_eq(wa_locale_chain(NULL, "en", chain, 6), 1);
    cr_expect_str_eq(chain[0], "en");
}

/* ---------------------------------------------------------- free text */

#define TEMPLATES_DIR CRM_SOURCE_DIR "/templates"

Test(wa_text, every_shipped_template_loads_and_renders)
{
    char err[512] = "";
    wa_text_t *t = wa_text_new(TEMPLATES_DIR, WA_TEXT_FILE, "en", err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_expect_eq(wa_text_count(t), 20, "5 message types x en/fr/es/de");
    const char *types[] = {"appointment_reminder", "event_invitation", "password_reset", "payment_receipt", "welcome"};
    const char *locales[] = {"en", "fr", "es", "de"};
    json_object *data = parse("{\"recipient\":{\"name\":\"Zoë <Ana> & Co\"},\"company\":{\"name\":\"Clinique\"},"
                              "\"appointment\":{\"date\":\"24/11\",\"time\":\"14:30\",\"location\":\"Nord\"},"
                              "\"event\":{\"name\":\"Gala\",\"date\":\"05/12\"},\"reset_url\":\"https://crm.example/r?a=1&b=2\","
                              "\"amount\":\"€42.00\",\"login_url\":\"https://crm.example/\"}");
    cmn_buf_t out = CMN_BUF_INIT;
    for (size_t i = 0; i < 5; i++) {
        for (size_t l = 0; l < 4; l++) {
            cr_expect(wa_text_has(t, types[i], locales[l]), "%s/%s", types[i], locales[l]);
            int rc = wa_text_render(t, types[i], locales[l], data, &out, err, sizeof err);
            cr_expect_eq(rc, 0, "%s/%s: %s", types[i], locales[l], err);
            cr_expect_gt(out.len, 0);
            cr_expect_neq(out.data[out.len - 1], '\n', "%s/%s: trailing line break kept", types[i], locales[l]);
            cr_expect_null(strstr(out.data, "&amp;"), "%s/%s: WhatsApp text must not be HTML-escaped", types[i],
                           locales[l]);
        }
    }
    cr_assert_eq(wa_text_render(t, "appointment_reminder", "fr-CA", data, &out, err, sizeof err), 0);
    cr_expect_not_null(strstr(out.data, "Bonjour Zoë <Ana> & Co"), "%s", out.data);
    cr_expect_not_null(strstr(out.data, "*24/11* à *14:30*"), "%s", out.data);
    cr_assert_eq(wa_text_render(t, "password_reset", "ja", data, &out, err, sizeof err), 0, "fallback to en");
    cr_expect_not_null(strstr(out.data, "https://crm.example/r?a=1&b=2"), "%s", out.data);
    cr_expect_eq(wa_text_render(t, "unknown_type", "en", data, &out, err, sizeof err), CMN_ERR_NOTFOUND);
    cr_expect(!wa_text_has(t, "unknown_type", "en"));
    cr_expect(!wa_text_has(t, NULL, "en"));
    cmn_buf_free(&out);
    json_object_put(data);
    wa_text_destroy(t);
}

/* A scratch template tree for the loader's failure cases. */
static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

Test(wa_text, broken_templates_stop_the_start)
{
    char dir[] = "/tmp/wa_text_XXXXXX";
    char path[256], err[512] = "";
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/_partials", dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/_partials/sig.mustache", dir);
    write_file(path, "-- {{company}}");
    snprintf(path, sizeof path, "%s/t", dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/t/en", dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/t/en/" WA_TEXT_FILE, dir);
    write_file(path, "Hi {{name}}\n{{> sig}}\n\n");

    wa_text_t *t = wa_text_new(dir, WA_TEXT_FILE, "en", err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    json_object *data = parse("{\"name\":\"Ana\",\"company\":\"ACME\"}");
    cmn_buf_t out = CMN_BUF_INIT;
    cr_assert_eq(wa_text_render(t, "t", "de", data, &out, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(out.data, "Hi Ana\n-- ACME", "partials work and trailing line breaks go");
    cmn_buf_free(&out);
    json_object_put(data);
    wa_text_destroy(t);

    snprintf(path, sizeof path, "%s/t/en/" WA_TEXT_FILE, dir);
    write_file(path, "Hi {{#name}}\n");
    t = wa_text_new(dir, WA_TEXT_FILE, "en", err, sizeof err);
    cr_expect_null(t, "an unclosed section must stop the worker");
    cr_expect_not_null(strstr(err, "t/en/" WA_TEXT_FILE), "%s", err);
    wa_text_destroy(t);

    cr_expect_null(wa_text_new("/nonexistent", WA_TEXT_FILE, "en", err, sizeof err));
    cr_expect_str_eq(err, "/nonexistent: not a readable directory");
    cr_expect_null(wa_text_new(dir, WA_TEXT_FILE, "not a locale", err, sizeof err));

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

Test(wa_text, data_overlays_the_recipient_without_addresses)
{
    cmn_recipient_t r = {.name = (char *)"Ana", .locale = (char *)"fr", .phone = (char *)"+33612345678",
                         .whatsapp = (char *)"+33612345678", .email = (char *)"ana@example.com"};
    json_object *ctx = parse("{\"recipient\":{\"title\":\"Dr\",\"name\":\"old\"},\"x\":1}");
    json_object *d = wa_text_data_new(ctx, &r);
    cr_assert_not_null(d);
    json_object *rec = cmn_json_get_object(d, "recipient");
    cr_expect_str_eq(cmn_json_get_string(rec, "name"), "Ana");
    cr_expect_str_eq(cmn_json_get_string(rec, "title"), "Dr");
    cr_expect_str_eq(cmn_json_get_string(rec, "locale"), "fr");
    cr_expect(!cmn_json_has(rec, "phone"));
    cr_expect(!cmn_json_has(rec, "whatsapp"));
    cr_expect(!cmn_json_has(rec, "email"));
    cr_expect(cmn_json_has(d, "x"));
    json_object_put(d);
    json_object_put(ctx);
}
