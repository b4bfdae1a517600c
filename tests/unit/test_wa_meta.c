/* test_wa_meta.c - the Cloud API request bodies of every kind of message,
 * compared structurally to Meta's official example of that kind
 * (shared/oracles/meta/cloud_api_examples.json, read at test time from
 * CRM_SHARED_DIR), plus the response and error parsing and the number
 * redaction (services/whatsapp-worker/wa_meta.h).
 *
 * "Structurally": at every object the same set of keys (our
 * biz_opaque_callback_data aside, which Meta documents but no example
 * carries), the same JSON kinds, and every array element of ours shaped like
 * the example's element of the same "type". Values are checked where they
 * are ours to choose (messaging_product, recipient_type, to, the text). */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/provider_errors.h"
#include "wa_content.h"
#include "wa_meta.h"
#include "wa_templates.h"

#define EXAMPLES CRM_SHARED_DIR "/oracles/meta/cloud_api_examples.json"
#define COMM_ID "6f1c1c2e-5d7b-5b5e-9a55-2f3d1b1f0a01"

static json_object *g_examples;
/* Contexts whose strings a wa_content_t borrows, put when the test ends. */
static json_object *g_keep[16];
static size_t g_nkeep;

static void load_examples(void)
{
    char err[256];
    FILE *f = fopen(EXAMPLES, "rb");
    cr_assert_not_null(f, "cannot open %s", EXAMPLES);
    cmn_buf_t b = CMN_BUF_INIT;
    char chunk[4096];
    for (;;) {
        size_t n = fread(chunk, 1, sizeof chunk, f);
        if (n == 0)
            break;
        cr_assert_eq(cmn_buf_append(&b, chunk, n), 0);
    }
    fclose(f);
    g_examples = cmn_json_parse(b.data, b.len, err, sizeof err);
    cmn_buf_free(&b);
    cr_assert_not_null(g_examples, "%s: %s", EXAMPLES, err);
}

static void free_examples(void)
{
    json_object_put(g_examples);
    g_examples = NULL;
    for (size_t i = 0; i < g_nkeep; i++)
        json_object_put(g_keep[i]);
    g_nkeep = 0;
}

TestSuite(wa_meta, .init = load_examples, .fini = free_examples);

static json_object *example(const char *name)
{
    json_object *v = cmn_json_get_object(g_examples, "verbatim_from_spec");
    json_object *sends = cmn_json_get_object(v, "send_request_examples");
    json_object *e = cmn_json_get_object(sends, name);
    cr_assert_not_null(e, "no example \"%s\"", name);
    return e;
}

static int kind(json_object *o)
{
    json_type t = json_object_get_type(o);
    return t == json_type_double ? json_type_int : (int)t; /* numbers are numbers */
}

/* Our value must have the example's key structure; see the file comment. */
static void expect_shape(json_object *ours, json_object *ex, const char *path)
{
    char sub[256];
    cr_expect_eq(kind(ours), kind(ex), "%s: kind %s, the example has %s", path,
                 json_type_to_name(json_object_get_type(ours)), json_type_to_name(json_object_get_type(ex)));
    if (kind(ours) != kind(ex))
        return;
    if (json_object_is_type(ours, json_type_object)) {
        json_object_object_foreach(ours, key, val)
        {
            snprintf(sub, sizeof sub, "%s.%s", path, key);
            if (path[0] == '$' && path[1] == '\0' && strcmp(key, "biz_opaque_callback_data") == 0)
                continue;
            json_object *exv = NULL;
            cr_expect(json_object_object_get_ex(ex, key, &exv), "%s: not in the example", sub);
            if (exv != NULL)
                expect_shape(val, exv, sub);
        }
        json_object_object_foreach(ex, ekey, evalue)
        {
            (void)evalue;
            snprintf(sub, sizeof sub, "%s.%s", path, ekey);
            cr_expect(cmn_json_has(ours, ekey), "%s: missing (the example has it)", sub);
        }
        return;
    }
    if (json_object_is_type(ours, json_type_array)) {
        size_t n = json_object_array_length(ours);
        size_t ne = json_object_array_length(ex);
        cr_expect(n > 0 || ne == 0, "%s: empty, the example's is not", path);
        for (size_t i = 0; i < n && ne > 0; i++) {
            json_object *el = json_object_array_get_idx(ours, i);
            const char *type = cmn_json_get_string(el, "type");
            json_object *match = json_object_array_get_idx(ex, 0);
            for (size_t k = 0; type != NULL && k < ne; k++) {
                const char *et = cmn_json_get_string(json_object_array_get_idx(ex, k), "type");
                if (et != NULL && strcmp(et, type) == 0) {
                    match = json_object_array_get_idx(ex, k);
                    break;
                }
            }
            if (type != NULL) {
                const char *mt = cmn_json_get_string(match, "type");
                cr_expect(mt != NULL && strcmp(mt, type) == 0, "%s[%zu]: type %s has no example element", path, i,
                          type);
            }
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            expect_shape(el, match, sub);
        }
    }
}

static json_object *build(const wa_meta_msg_t *m)
{
    cmn_buf_t b = CMN_BUF_INIT;
    char err[256] = "";
    int rc = wa_meta_body(m, &b, err, sizeof err);
    cr_assert_eq(rc, 0, "wa_meta_body: %s", err);
    json_object *o = cmn_json_parse(b.data, b.len, err, sizeof err);
    cr_assert_not_null(o, "not JSON (%s): %s", err, b.data);
    cmn_buf_free(&b);
    return o;
}

static wa_content_t content_of(const char *context_json)
{
    char err[256] = "";
    wa_content_t c;
    json_object *ctx = json_tokener_parse(context_json);
    cr_assert_not_null(ctx);
    int rc = wa_content_parse(ctx, &c, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    /* The strings borrowed from ctx must live as long as c. */
    cr_assert_lt(g_nkeep, sizeof g_keep / sizeof g_keep[0]);
    g_keep[g_nkeep++] = ctx;
    return c;
}

static const char *str(json_object *o, const char *path)
{
    json_object *v = o;
    char buf[128];
    char *save = NULL;
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok_r(buf, ".", &save); tok != NULL && v != NULL; tok = strtok_r(NULL, ".", &save))
        v = json_object_object_get(v, tok);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

static void expect_envelope(json_object *o, const char *type)
{
    cr_expect_str_eq(str(o, "messaging_product"), "whatsapp");
    cr_expect_str_eq(str(o, "recipient_type"), "individual");
    cr_expect_str_eq(str(o, "to"), "14155550100", "digits only, no '+'");
    cr_expect_str_eq(str(o, "type"), type);
    cr_expect_str_eq(str(o, "biz_opaque_callback_data"), COMM_ID, "the communication id travels back in webhooks");
}

/* --------------------------------------------------------------- kinds */

Test(wa_meta, text_matches_send_text_message)
{
    wa_content_t c = content_of("{}");
    wa_meta_msg_t m = {.to = "14155550100", .biz_opaque = COMM_ID, .content = &c, .text = "Hello Zoë,\n\n*Tomorrow*"};
    json_object *o = build(&m);
    expect_shape(o, example("Send Text Message"), "$");
    expect_envelope(o, "text");
    cr_expect_str_eq(str(o, "text.body"), "Hello Zoë,\n\n*Tomorrow*");
    cr_expect(!json_object_get_boolean(json_object_object_get(json_object_object_get(o, "text"), "preview_url")));
    json_object_put(o);

    wa_content_t p = content_of("{\"whatsapp\":{\"type\":\"text\",\"preview_url\":true}}");
    m.content = &p;
    o = build(&m);
    expect_shape(o, example("Send Text Message"), "$");
    cr_expect(json_object_get_boolean(json_object_object_get(json_object_object_get(o, "text"), "preview_url")));
    json_object_put(o);
}

Test(wa_meta, template_with_body_parameters_matches_template_text)
{
    wa_tpl_call_t t = {.name = "appointment_reminder", .language = "fr", .n_body = 2};
    t.body[0] = (char *)"24/11/2026";
    t.body[1] = (char *)"14 h 30";
    wa_meta_msg_t m = {.to = "14155550100", .biz_opaque = COMM_ID, .tpl = &t};
    json_object *o = build(&m);
    expect_shape(o, example("Send Message Template Text"), "$");
    expect_envelope(o, "template");
    cr_expect_str_eq(str(o, "template.name"), "appointment_reminder");
    cr_expect_str_eq(str(o, "template.language.code"), "fr");
    json_object *comps = json_object_object_get(json_object_object_get(o, "template"), "components");
    cr_assert_eq(json_object_array_length(comps), 1);
    json_object *params = json_object_object_get(json_object_array_get_idx(comps, 0), "parameters");
    cr_expect_str_eq(str(json_object_array_get_idx(params, 1), "text"), "14 h 30");
    json_object_put(o);
}

Test(wa_meta, template_with_header_body_and_buttons_matches_template_interactive)
{
    wa_tpl_call_t t = {.name = "event_invitation",
                       .language = "en_US",
                       .header_kind = WA_TPL_HEADER_IMAGE,
                       .header_value = (char *)"https://cdn.example/gala.png",
                       .n_body = 1,
                       .n_buttons = 2};
    t.body[0] = (char *)"Gala";
    t.buttons[0].kind = WA_TPL_BUTTON_QUICK_REPLY;
    t.buttons[0].index = 0;
    t.buttons[0].value = (char *)"event_accept";
    t.buttons[1].kind = WA_TPL_BUTTON_QUICK_REPLY;
    t.buttons[1].index = 1;
    t.buttons[1].value = (char *)"event_decline";
    wa_meta_msg_t m = {.to = "14155550100", .biz_opaque = COMM_ID, .tpl = &t};
    json_object *o = build(&m);
    expect_shape(o, example("Send Message Template Interactive"), "$");
    expect_envelope(o, "template");
    json_object *comps = json_object_object_get(json_object_object_get(o, "template"), "components");
    cr_assert_eq(json_object_array_length(comps), 4, "header, body, two buttons");
    cr_expect_str_eq(str(json_object_array_get_idx(comps, 0), "type"), "header");
    json_object *b1 = json_object_array_get_idx(comps, 3);
    cr_expect_str_eq(str(b1, "sub_type"), "quick_reply");
    cr_expect_str_eq(str(b1, "index"), "1", "the index is a string, as in the example");
    json_object *bp = json_object_array_get_idx(json_object_object_get(b1, "parameters"), 0);
    cr_expect_str_eq(str(bp, "payload"), "event_decline");
    json_object_put(o);

    /* Header and body only: "Send Message Template Media". */
    t.n_buttons = 0;
    o = build(&m);
    expect_shape(o, example("Send Message Template Media"), "$");
    json_object_put(o);
}

Test(wa_meta, template_text_header_and_url_button)
{
    /* No single example shows a text header or a url button, but every
     * element has the shape of an example element of its type. */
    wa_tpl_call_t t = {.name = "password_reset_link",
                       .language = "de",
                       .header_kind = WA_TPL_HEADER_TEXT,
                       .header_value = (char *)"Konto",
                       .n_body = 1,
                       .n_buttons = 1};
    t.body[0] = (char *)"https://crm.example/r?t=1";
    t.buttons[0].kind = WA_TPL_BUTTON_URL;
    t.buttons[0].index = 0;
    t.buttons[0].value = (char *)"tok123";
    wa_meta_msg_t m = {.to = "14155550100", .biz_opaque = COMM_ID, .tpl = &t};
    json_object *o = build(&m);
    expect_envelope(o, "template");
    json_object *comps = json_object_object_get(json_object_object_get(o, "template"), "components");
    json_object *hp = json_object_array_get_idx(json_object_object_get(json_object_array_get_idx(comps, 0), "parameters"), 0);
    expect_shape(hp, json_object_array_get_idx(json_object_object_get(json_object_array_get_idx(json_object_object_get(json_object_object_get(example("Send Message Template Text"), "template"), "components"), 0), "parameters"), 0), "$.header.parameters[0]");
    json_object *btn = json_object_array_get_idx(comps, 2);
    cr_expect_str_eq(str(btn, "sub_type"), "url");
    cr_expect_str_eq(str(json_object_array_get_idx(json_object_object_get(btn, "parameters"), 0), "text"), "tok123");
    json_object_put(o);
}

Test(wa_meta, template_without_parameters_has_no_components)
{
    wa_tpl_call_t t = {.name = "hello_world", .language = "en_US"};
    wa_meta_msg_t m = {.to = "14155550100", .biz_opaque = COMM_ID, .tpl = &t};
    json_object *o = build(&m);
    json_object *tpl = json_object_object_get(o, "template");
    cr_expect(!cmn_json_has(tpl, "components"), "an empty components array is not sent");
    cr_expect_str_eq(str(o, "template.language.code"), "en_US");
    json_object_put(o);
}

Test(wa_meta, image_and_document_by_link)
{
    wa_content_t img = content_of("{\"whatsapp\":{\"type\":\"image\",\"link\":\"https://cdn.example/map.png\"}}");
    wa_meta_msg_t m = {.to = "14155550100", .biz_opaque = COMM_ID, .content = &img, .text = ""};
    json_object *o = build(&m);
    expect_shape(o, example("Send Image Message by URL"), "$");
    expect_envelope(o, "image");
    cr_expect_str_eq(str(o, "image.link"), "https://cdn.example/map.png");
    json_object_put(o);

    /* The rendered text becomes the caption: a key the spec documents as
     * optional for media (MediaObject) and the document example carries. */
    m.text = "Your map";
    o = build(&m);
    cr_expect_str_eq(str(o, "image.caption"), "Your map");
    json_object_put(o);

    wa_content_t doc = content_of("{\"whatsapp\":{\"type\":\"document\",\"link\":\"https://cdn.example/r.pdf\","
                                  "\"caption\":\"Receipt R-1001\"}}");
    m.content = &doc;
    m.text = "ignored: an explicit caption wins";
    o = build(&m);
    expect_shape(o, example("Send Document Message by URL"), "$");
    expect_envelope(o, "document");
    cr_expect_str_eq(str(o, "document.caption"), "Receipt R-1001");
    cr_expect_str_eq(str(o, "document.link"), "https://cdn.example/r.pdf");
    json_object_put(o);
}

Test(wa_meta, reply_buttons_match_send_reply_button)
{
    wa_content_t c = content_of("{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"button\","
                                "\"buttons\":[{\"id\":\"confirm\",\"title\":\"Confirm\"},"
                                "{\"id\":\"cancel\",\"title\":\"Cancel\"}]}}}");
    wa_meta_msg_t m = {.to = "14155550100", .biz_opaque = COMM_ID, .content = &c, .text = "Tomorrow 14:30?"};
    json_object *o = build(&m);
    expect_shape(o, example("Send Reply Button"), "$");
    expect_envelope(o, "interactive");
    cr_expect_str_eq(str(o, "interactive.body.text"), "Tomorrow 14:30?");
    json_object *buttons = json_object_object_get(json_object_object_get(json_object_object_get(o, "interactive"), "action"), "buttons");
    cr_assert_eq(json_object_array_length(buttons), 2);
    cr_expect_str_eq(str(json_object_array_get_idx(buttons, 1), "reply.id"), "cancel");
    json_object_put(o);
}

Test(wa_meta, list_matches_send_list_message)
{
    wa_content_t c = content_of(
        "{\"whatsapp\":{\"type\":\"interactive\",\"interactive\":{\"type\":\"list\",\"header\":\"Slots\","
        "\"footer\":\"Reply to book\",\"button\":\"Choose\",\"sections\":["
        "{\"title\":\"Monday\",\"rows\":[{\"id\":\"mon-9\",\"title\":\"9:00\",\"description\":\"Dr Nord\"},"
        "{\"id\":\"mon-10\",\"title\":\"10:00\",\"description\":\"Dr Sud\"}]},"
        "{\"title\":\"Tuesday\",\"rows\":[{\"id\":\"tue-9\",\"title\":\"9:00\",\"description\":\"Dr Est\"}]}]}}}");
    wa_meta_msg_t m = {.to = "14155550100", .biz_opaque = COMM_ID, .content = &c, .text = "Pick a slot"};
    json_object *o = build(&m);
    expect_shape(o, example("Send List Message"), "$");
    expect_envelope(o, "interactive");
    cr_expect_str_eq(str(o, "interactive.header.type"), "text");
    cr_expect_str_eq(str(o, "interactive.header.text"), "Slots");
    cr_expect_str_eq(str(o, "interactive.footer.text"), "Reply to book");
    cr_expect_str_eq(str(o, "interactive.action.button"), "Choose");
    json_object *sections = json_object_object_get(json_object_object_get(json_object_object_get(o, "interactive"), "action"), "sections");
    cr_assert_eq(json_object_array_length(sections), 2);
    cr_expect_eq(json_object_array_length(json_object_object_get(json_object_array_get_idx(sections, 0), "rows")), 2);
    cr_expect_str_eq(str(json_object_array_get_idx(json_object_object_get(json_object_array_get_idx(sections, 1), "rows"), 0), "id"), "tue-9");
    json_object_put(o);
}

Test(wa_meta, refuses_what_meta_would_refuse)
{
    char err[256];
    cmn_buf_t b = CMN_BUF_INIT;
    wa_content_t c = content_of("{}");
    wa_meta_msg_t m = {.to = "+14155550100", .biz_opaque = COMM_ID, .content = &c, .text = "hi"};
    cr_expect_eq(wa_meta_body(&m, &b, err, sizeof err), CMN_ERR_INVALID, "a '+' in to");
    m.to = "1415555010012345";
    cr_expect_eq(wa_meta_body(&m, &b, err, sizeof err), CMN_ERR_INVALID, "16 digits");
    m.to = "14155550100";
    m.text = "";
    cr_expect_eq(wa_meta_body(&m, &b, err, sizeof err), CMN_ERR_INVALID, "empty text");
    cr_expect_str_eq(err, "the text is empty");
    char *big = malloc(WA_TEXT_MAX_CHARS + 2);
    memset(big, 'a', WA_TEXT_MAX_CHARS + 1);
    big[WA_TEXT_MAX_CHARS + 1] = '\0';
    m.text = big;
    cr_expect_eq(wa_meta_body(&m, &b, err, sizeof err), CMN_ERR_INVALID, "4097 characters");
    big[WA_TEXT_MAX_CHARS] = '\0';
    cr_expect_eq(wa_meta_body(&m, &b, err, sizeof err), 0, "4096 characters: %s", err);
    /* 4096 two-byte characters are 4096 characters, not 8192. */
    char *wide = malloc(2 * WA_TEXT_MAX_CHARS + 1);
    for (int i = 0; i < WA_TEXT_MAX_CHARS; i++)
        memcpy(wide + 2 * i, "\xc3\xa9", 2);
    wide[2 * WA_TEXT_MAX_CHARS] = '\0';
    m.text = wide;
    cr_expect_eq(wa_meta_body(&m, &b, err, sizeof err), 0, "%s", err);
    free(wide);
    free(big);

    wa_content_t tpl = content_of("{\"whatsapp\":{\"type\":\"template\"}}");
    m.content = &tpl;
    m.text = "x";
    cr_expect_eq(wa_meta_body(&m, &b, err, sizeof err), CMN_ERR_INVALID, "a template kind without its template");

    char opaque[WA_META_OPAQUE_MAX + 2];
    memset(opaque, 'x', sizeof opaque - 1);
    opaque[sizeof opaque - 1] = '\0';
    m.content = &c;
    m.biz_opaque = opaque;
    cr_expect_eq(wa_meta_body(&m, &b, err, sizeof err), CMN_ERR_INVALID, "513-character opaque data");
    cmn_buf_free(&b);
}

Test(wa_meta, url)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(wa_meta_url("https://graph.facebook.com/", "v23.0", "106540352242922", &b), 0);
    cr_expect_str_eq(b.data, "https://graph.facebook.com/v23.0/106540352242922/messages");
    cr_expect_eq(wa_meta_url("ftp://graph.facebook.com", "v23.0", "1", &b), CMN_ERR_INVALID);
    cr_expect_eq(wa_meta_url("https://graph.facebook.com", "23.0", "1", &b), CMN_ERR_INVALID);
    cr_expect_eq(wa_meta_url("https://graph.facebook.com", "v23.0", "12a", &b), CMN_ERR_INVALID);
    cr_expect(wa_meta_valid_version("v23.0"));
    cr_expect(wa_meta_valid_version("v9"));
    cr_expect(!wa_meta_valid_version("v"));
    cr_expect(!wa_meta_valid_version("v23.0/../x"));
    cmn_buf_free(&b);
}

/* ------------------------------------------------------------ responses */

Test(wa_meta, parses_the_official_success_response)
{
    json_object *v = cmn_json_get_object(g_examples, "verbatim_from_spec");
    const char *body = json_object_to_json_string(cmn_json_get_object(v, "send_success_response"));
    char id[128], status[32];
    cr_assert_eq(wa_meta_parse_success(body, strlen(body), id, sizeof id, status, sizeof status), 0);
    cr_expect_str_eq(id, "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA");
    cr_expect_str_eq(status, "");
    const char *marketing = "{\"messages\":[{\"id\":\"wamid.X\",\"message_status\":\"accepted\"}]}";
    cr_assert_eq(wa_meta_parse_success(marketing, strlen(marketing), id, sizeof id, status, sizeof status), 0);
    cr_expect_str_eq(status, "accepted");
    cr_expect_eq(wa_meta_parse_success("{\"messages\":[]}", 15, id, sizeof id, status, sizeof status), CMN_ERR_PARSE);
    cr_expect_eq(wa_meta_parse_success("<html>", 6, id, sizeof id, status, sizeof status), CMN_ERR_PARSE);
    cr_expect_eq(wa_meta_parse_success(NULL, 0, id, sizeof id, status, sizeof status), CMN_ERR_PARSE);
}

static json_object *constructed(const char *name)
{
    json_object *o = cmn_json_get_object(cmn_json_get_object(g_examples, "constructed"), name);
    cr_assert_not_null(o, "no constructed.%s", name);
    return o;
}

Test(wa_meta, parses_graph_errors_and_classifies_them)
{
    wa_meta_error_t e;
    const char *body = json_object_to_json_string(constructed("sync_error_130429"));
    cr_assert_eq(wa_meta_parse_error(body, strlen(body), &e), 0);
    cr_expect_eq(e.code, 130429);
    cr_expect_str_eq(e.message, "(#130429) Rate limit hit");
    cr_expect_str_eq(e.details, "Cloud API message throughput has been reached.");
    cr_expect_str_eq(e.type, "OAuthException");
    cr_expect_str_eq(e.fbtrace_id, "AXsgnV2Cm3ZMGF3dF_cfYIn");
    cmn_provider_outcome_t out = cmn_provider_classify_meta(429, e.code);
    cr_expect(cmn_provider_class_is_retryable(out.cls), "130429 is retried");

    body = json_object_to_json_string(constructed("sync_error_190_expired"));
    cr_assert_eq(wa_meta_parse_error(body, strlen(body), &e), 0);
    cr_expect_eq(e.code, 190);
    cr_expect_eq(e.subcode, 463);
    cr_expect_eq(cmn_provider_classify_meta(401, e.code).cls, CMN_PROVIDER_PERMANENT_ACCOUNT);

    /* Every Graph error example of the spec parses. */
    json_object *by_code = cmn_json_get_object(cmn_json_get_object(g_examples, "verbatim_from_spec"),
                                               "graph_error_examples_by_code");
    json_object_object_foreach(by_code, code, err)
    {
        const char *text = json_object_to_json_string(err);
        cr_expect_eq(wa_meta_parse_error(text, strlen(text), &e), 0, "%s", code);
        cr_expect_eq(e.code, strtol(code, NULL, 10), "%s", code);
    }
    body = "{\"error\":{\"message\":\"x\",\"is_transient\":true,\"code\":2}}";
    cr_assert_eq(wa_meta_parse_error(body, strlen(body), &e), 0);
    cr_expect(e.is_transient);

    cr_expect(!cmn_provider_class_is_retryable(cmn_provider_classify_meta(400, 131047).cls), "131047 permanent");
    cr_expect(!cmn_provider_class_is_retryable(cmn_provider_classify_meta(400, 131026).cls), "131026 permanent");
    cr_expect_eq(wa_meta_parse_error("<html>oops</html>", 17, &e), CMN_ERR_PARSE);
    cr_expect_eq(wa_meta_parse_error("{\"error\":{}}", 12, &e), CMN_ERR_PARSE);
    cr_expect_eq(wa_meta_parse_error("", 0, &e), CMN_ERR_PARSE);
}

Test(wa_meta, error_texts_lose_phone_numbers)
{
    wa_meta_error_t e;
    const char *body = "{\"error\":{\"code\":131030,\"message\":\"(#131030) Recipient phone number not in allowed list\","
                       "\"error_data\":{\"details\":\"Recipient +1 (415) 555-0100 is not a test number; 16505551234 either\"}}}";
    cr_assert_eq(wa_meta_parse_error(body, strlen(body), &e), 0);
    cr_expect_str_eq(e.message, "(#131030) Recipient phone number not in allowed list", "codes stay readable");
    cr_expect_str_eq(e.details, "Recipient <phone> is not a test number; <phone> either");
}

Test(wa_meta, redact_numbers)
{
    char s[256];
    snprintf(s, sizeof s, "call +33 6 12 34 56 78 or 0612345678, code 131047, id wamid.HBg12345678 at 12:30");
    wa_redact_numbers(s);
    cr_expect_str_eq(s, "call <phone> or <phone>, code 131047, id wamid.HBg12345678 at 12:30");
    snprintf(s, sizeof s, "1234567");
    wa_redact_numbers(s);
    cr_expect_str_eq(s, "<phone>");
    snprintf(s, sizeof s, "123456 and +12");
    wa_redact_numbers(s);
    cr_expect_str_eq(s, "123456 and +12");
    wa_redact_numbers(NULL);
}
