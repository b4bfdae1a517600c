/* test_msbx_shape.c - the Meta sandbox's validator (tools/sandbox-meta/
 * msbx_shape.h): every official request example passes (that is the point
 * of validating against the examples rather than Meta's schemas, which
 * reject them), and bodies Meta would refuse do not, each with a reason
 * naming the member. Also the scripted recipients (msbx_api.h). */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "crm/json.h"
#include "msbx_api.h"
#include "msbx_shape.h"

#define EXAMPLES CRM_SHARED_DIR "/oracles/meta/cloud_api_examples.json"

static msbx_examples_t g_ex;

static void setup(void)
{
    char err[256] = "";
    cr_assert_eq(msbx_examples_load(EXAMPLES, &g_ex, err, sizeof err), 0, "%s", err);
}

static void teardown(void)
{
    msbx_examples_free(&g_ex);
}

TestSuite(msbx_shape, .init = setup, .fini = teardown);

/* A copy of example `name` with placeholders made concrete (the examples
 * carry "{{Recipient-Phone-Number}}" and "http(s)://..." placeholders). */
static json_object *example(const char *name)
{
    for (size_t i = 0; i < g_ex.n; i++) {
        if (strcmp(g_ex.names[i], name) != 0)
            continue;
        json_object *copy = json_tokener_parse(json_object_to_json_string(g_ex.items[i]));
        json_object_object_add(copy, "to", json_object_new_string("16505551234"));
        const char *media[] = {"image", "document"};
        for (size_t k = 0; k < 2; k++) {
            json_object *m = cmn_json_get_object(copy, media[k]);
            if (m != NULL && cmn_json_has(m, "link"))
                json_object_object_add(m, "link", json_object_new_string("https://cdn.example/x"));
        }
        json_object *comps = cmn_json_get_array(cmn_json_get_object(copy, "template"), "components");
        for (size_t c = 0; comps != NULL && c < json_object_array_length(comps); c++) {
            json_object *params = cmn_json_get_array(json_object_array_get_idx(comps, c), "parameters");
            for (size_t p = 0; p < json_object_array_length(params); p++) {
                json_object *img = cmn_json_get_object(json_object_array_get_idx(params, p), "image");
                if (img != NULL)
                    json_object_object_add(img, "link", json_object_new_string("https://cdn.example/i.png"));
            }
        }
        return copy;
    }
    cr_assert_fail("no example %s", name);
    return NULL;
}

static void expect_refused(json_object *body, const char *reason)
{
    char err[512] = "";
    cr_expect_eq(msbx_check(&g_ex, body, err, sizeof err), -1, "accepted: %s", json_object_to_json_string(body));
    cr_expect_str_eq(err, reason);
    json_object_put(body);
}

Test(msbx_shape, loads_every_send_example)
{
    cr_expect_eq(g_ex.n, 11);
    cr_expect_eq(g_ex.ntypes, 5, "text, template, image, document, interactive");
    cr_expect_not_null(g_ex.success);
}

Test(msbx_shape, every_official_example_passes)
{
    for (size_t i = 0; i < g_ex.n; i++) {
        char err[512] = "";
        json_object *b = example(g_ex.names[i]);
        cr_expect_eq(msbx_check(&g_ex, b, err, sizeof err), 0, "%s: %s", g_ex.names[i], err);
        json_object_put(b);
    }
}

Test(msbx_shape, documented_optional_members_pass)
{
    char err[512] = "";
    json_object *b = example("Send Text Message");
    json_object_object_add(b, "biz_opaque_callback_data", json_object_new_string("6f1c1c2e"));
    cr_expect_eq(msbx_check(&g_ex, b, err, sizeof err), 0, "%s", err);
    json_object_put(b);

    b = example("Send Image Message by URL");
    json_object_object_add(cmn_json_get_object(b, "image"), "caption", json_object_new_string("Map"));
    cr_expect_eq(msbx_check(&g_ex, b, err, sizeof err), 0, "%s", err);
    json_object_put(b);

    /* Reply buttons with a header (the list example shows one). */
    b = example("Send Reply Button");
    json_object_object_add(cmn_json_get_object(b, "interactive"), "header",
                           json_tokener_parse("{\"type\":\"text\",\"text\":\"Hi\"}"));
    cr_expect_eq(msbx_check(&g_ex, b, err, sizeof err), 0, "%s", err);
    json_object_put(b);

    /* A template header with a text parameter, and no components at all. */
    b = example("Send Message Template Text");
    json_object_object_add(cmn_json_get_object(b, "template"), "components",
                           json_tokener_parse("[{\"type\":\"header\",\"parameters\":[{\"type\":\"text\",\"text\":\"x\"}]}]"));
    cr_expect_eq(msbx_check(&g_ex, b, err, sizeof err), 0, "%s", err);
    json_object_object_del(cmn_json_get_object(b, "template"), "components");
    cr_expect_eq(msbx_check(&g_ex, b, err, sizeof err), 0, "%s", err);
    json_object_put(b);
}

Test(msbx_shape, refusals_name_the_member)
{
    json_object *b = example("Send Text Message");
    json_object_object_add(b, "extra", json_object_new_int(1));
    expect_refused(b, "body: unknown key 'extra' (no example has it here)");

    b = example("Send Text Message");
    json_object_object_add(b, "type", json_object_new_string("sticker"));
    expect_refused(b, "type: 'sticker' is not one of the examples' types (text, template, image, document, interactive)");

    b = example("Send Text Message");
    json_object_object_del(cmn_json_get_object(b, "text"), "body");
    expect_refused(b, "text: missing key 'body' (the examples have it)");

    b = example("Send Text Message");
    json_object_object_add(cmn_json_get_object(b, "text"), "preview_url", json_object_new_string("no"));
    expect_refused(b, "text.preview_url: is a string, the examples have a boolean");

    b = example("Send Text Message");
    json_object_object_add(b, "messaging_product", json_object_new_string("sms"));
    expect_refused(b, "messaging_product: must be \"whatsapp\"");

    b = example("Send Text Message");
    json_object_object_add(b, "to", json_object_new_string("+16505551234"));
    expect_refused(b, "to: must be the recipient's number: 1 to 15 digits");

    b = example("Send Message Template Text");
    json_object_object_del(cmn_json_get_object(cmn_json_get_object(b, "template"), "language"), "code");
    expect_refused(b, "template.language: missing key 'code' (the examples have it)");

    b = example("Send Message Template Text");
    json_object_object_add(cmn_json_get_object(cmn_json_get_object(b, "template"), "language"), "code",
                           json_object_new_string(""));
    expect_refused(b, "template.language.code: must be a non-empty string");

    b = example("Send Message Template Text");
    json_object *comp = json_object_array_get_idx(cmn_json_get_array(cmn_json_get_object(b, "template"), "components"), 0);
    json_object_object_add(comp, "type", json_object_new_string("footer"));
    expect_refused(b, "template.components[0].type: 'footer' is not one of the examples' types here (body, header, button)");

    b = example("Send Message Template Text");
    json_object_object_add(cmn_json_get_object(b, "template"), "components", json_object_new_array());
    expect_refused(b, "template.components: must not be empty (no example is)");

    b = example("Send Reply Button");
    json_object *buttons = cmn_json_get_array(cmn_json_get_object(cmn_json_get_object(b, "interactive"), "action"), "buttons");
    for (int i = 0; i < 2; i++)
        json_object_array_add(buttons, json_tokener_parse("{\"type\":\"reply\",\"reply\":{\"id\":\"x\",\"title\":\"X\"}}"));
    expect_refused(b, "interactive.action.buttons: must hold 1 to 3 buttons");

    b = example("Send Image Message by URL");
    json_object_object_add(cmn_json_get_object(b, "image"), "link", json_object_new_string("ftp://x"));
    expect_refused(b, "image.link: must be an http(s) URL");

    b = example("Send Text Message");
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    json_object_object_add(b, "biz_opaque_callback_data", json_object_new_string(big));
    expect_refused(b, "biz_opaque_callback_data: must be a string of at most 512 characters");

    expect_refused(json_tokener_parse("[1]"), "body: must be a JSON object");
}

Test(msbx_shape, scripted_recipients)
{
    msbx_script_t s;
    cr_expect(!msbx_script_for("16505551234", &s));
    cr_expect(!msbx_script_for(NULL, &s));
    cr_assert(msbx_script_for("14155131047", &s));
    cr_expect_eq(s.http_status, 400);
    cr_expect_eq(s.code, 131047);
    cr_assert(msbx_script_for("14155130429", &s));
    cr_expect_eq(s.http_status, 429);
    cr_expect_eq(s.code, 130429);
    /* 131026 is accepted: Meta reports it in the status webhook
     * (test_msbx_webhook.c). */
    cr_expect(!msbx_script_for("14155131026", &s));
    cr_assert(msbx_script_for("14155500500", &s));
    cr_expect_eq(s.http_status, 500);
    cr_expect(s.raw);
    cr_assert(msbx_script_for("1415883000", &s));
    cr_expect_eq(s.http_status, 200);
    cr_expect_eq(s.delay_ms, 3000);
}
