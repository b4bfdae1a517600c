/* test_router_config.c - the routing file and ROUTER_ENABLED_CHANNELS. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "router_config.h"

static router_config_t *parse(const char *json, char *err, size_t errlen)
{
    err[0] = '\0';
    return router_config_parse(json, strlen(json), err, errlen);
}

/* Parses json, expects a failure and an error containing want. */
static void expect_error(const char *json, const char *want)
{
    char err[512];
    router_config_t *cfg = parse(json, err, sizeof err);
    cr_expect_null(cfg, "accepted: %s", json);
    router_config_destroy(cfg);
    cr_expect(strstr(err, want) != NULL, "error \"%s\" does not mention \"%s\"", err, want);
}

static void expect_order(const router_order_t *o, const cmn_channel_t *want, size_t n)
{
    cr_assert_not_null(o);
    cr_assert_eq(o->n, n, "order has %zu channels, want %zu", o->n, n);
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(o->ch[i], want[i], "channel %zu is %s, want %s", i, cmn_channel_name(o->ch[i]),
                     cmn_channel_name(want[i]));
}

Test(router_config, valid_document)
{
    char err[256];
    router_config_t *cfg = parse("{\"default\":[\"email\",\"sms\"],"
                                 " \"message_types\":{\"welcome\":[\"whatsapp\",\"email\"],\"b.x-1\":[\"sms\"]}}",
                                 err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    expect_order(router_config_default_order(cfg), (cmn_channel_t[]){CMN_CHANNEL_EMAIL, CMN_CHANNEL_SMS}, 2);
    expect_order(router_config_type_order(cfg, "welcome"), (cmn_channel_t[]){CMN_CHANNEL_WHATSAPP, CMN_CHANNEL_EMAIL},
                 2);
    expect_order(router_config_type_order(cfg, "b.x-1"), (cmn_channel_t[]){CMN_CHANNEL_SMS}, 1);
    cr_expect_null(router_config_type_order(cfg, "unknown_type"));
    cr_expect_null(router_config_type_order(cfg, NULL));
    cr_expect_eq(router_config_type_count(cfg), 2);
    router_config_destroy(cfg);
}

Test(router_config, message_types_are_optional)
{
    char err[256];
    router_config_t *cfg = parse("{\"default\":[\"sms\"]}", err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    cr_expect_eq(router_config_type_count(cfg), 0);
    cr_expect_null(router_config_type_order(cfg, "welcome"));
    router_config_destroy(cfg);

    cfg = parse("{\"default\":[\"sms\"],\"message_types\":{}}", err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    router_config_destroy(cfg);
}

Test(router_config, many_types_are_found)
{
    char json[8192];
    size_t len = (size_t)snprintf(json, sizeof json, "{\"default\":[\"email\"],\"message_types\":{");
    for (int i = 0; i < 100; i++)
        len += (size_t)snprintf(json + len, sizeof json - len, "%s\"type_%03d\":[\"%s\"]", i ? "," : "", i,
                                i % 2 ? "sms" : "whatsapp");
    snprintf(json + len, sizeof json - len, "}}");
    char err[256];
    router_config_t *cfg = parse(json, err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    for (int i = 0; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof name, "type_%03d", i);
        const router_order_t *o = router_config_type_order(cfg, name);
        cr_assert_not_null(o, "%s", name);
        cr_expect_eq(o->ch[0], i % 2 ? CMN_CHANNEL_SMS : CMN_CHANNEL_WHATSAPP);
    }
    router_config_destroy(cfg);
}

Test(router_config, unknown_channel_names_the_key)
{
    expect_error("{\"default\":[\"email\"],\"message_types\":{\"welcome\":[\"email\",\"fax\"]}}",
                 "message_types.welcome[1]: unknown channel \"fax\"");
    expect_error("{\"default\":[\"pigeon\"]}", "default[0]: unknown channel \"pigeon\"");
    /* Channel names are exact: the wire names are lower case. */
    expect_error("{\"default\":[\"Email\"]}", "default[0]: unknown channel \"Email\"");
}

Test(router_config, malformed_json)
{
    expect_error("{\"default\":[\"email\"", "malformed JSON");
    expect_error("", "malformed JSON");
    expect_error("{\"default\":[\"email\"]} trailing", "malformed JSON");
    expect_error("[\"email\"]", "top level must be a JSON object");
}

Test(router_config, structural_errors_name_the_key)
{
    expect_error("{\"message_types\":{}}", "default: required");
    expect_error("{\"default\":[]}", "default: must list at least one channel");
    expect_error("{\"default\":\"email\"}", "default: must be an array");
    expect_error("{\"default\":[\"email\",3]}", "default[1]: must be a channel name string");
    expect_error("{\"default\":[\"email\",\"sms\",\"email\"]}", "default[2]: channel \"email\" is listed twice");
    expect_error("{\"default\":[\"email\"],\"defaults\":[\"sms\"]}", "unknown key \"defaults\"");
    expect_error("{\"default\":[\"email\"],\"message_types\":[]}", "message_types: must be an object");
    expect_error("{\"default\":[\"email\"],\"message_types\":{\"welcome\":[]}}",
                 "message_types.welcome: must list at least one channel");
    expect_error("{\"default\":[\"email\"],\"message_types\":{\"welcome\":{\"sms\":1}}}",
                 "message_types.welcome: must be an array");
    expect_error("{\"default\":[\"email\"],\"message_types\":{\"Welcome Mail\":[\"email\"]}}",
                 "message_types.Welcome Mail: not a valid message type name");
}

Test(router_config, shipped_file_is_valid)
{
    char err[512];
    router_config_t *cfg = router_config_load(CRM_SOURCE_DIR "/config/routing.json", err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    const char *types[] = {"appointment_reminder", "payment_receipt", "event_invitation", "password_reset",
                           "welcome"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        cr_expect_not_null(router_config_type_order(cfg, types[i]), "no order for %s", types[i]);
    cr_expect_gt(router_config_default_order(cfg)->n, 0);
    router_config_destroy(cfg);
}

Test(router_config, load_errors_carry_the_path)
{
    char err[512];
    cr_expect_null(router_config_load("/nonexistent/routing.json", err, sizeof err));
    cr_expect(strstr(err, "/nonexistent/routing.json") != NULL, "%s", err);

    char path[] = "/tmp/test_router_config_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char bad[] = "{\"default\":[\"email\",\"telex\"]}";
    cr_assert_eq(write(fd, bad, sizeof bad - 1), (ssize_t)(sizeof bad - 1));
    close(fd);
    cr_expect_null(router_config_load(path, err, sizeof err));
    cr_expect(strstr(err, path) != NULL, "%s", err);
    cr_expect(strstr(err, "default[1]: unknown channel \"telex\"") != NULL, "%s", err);
    unlink(path);
}

Test(router_config, enabled_channel_lists)
{
    unsigned mask = 0;
    char err[256];
    cr_expect_eq(router_channels_parse_list("email", &mask, err, sizeof err), 0);
    cr_expect_eq(mask, ROUTER_CHANNEL_BIT(CMN_CHANNEL_EMAIL));
    cr_expect_eq(router_channels_parse_list(" email , whatsapp ", &mask, err, sizeof err), 0, "%s", err);
    cr_expect_eq(mask, ROUTER_CHANNEL_BIT(CMN_CHANNEL_EMAIL) | ROUTER_CHANNEL_BIT(CMN_CHANNEL_WHATSAPP));
    cr_expect_eq(router_channels_parse_list("sms,sms", &mask, err, sizeof err), 0);
    cr_expect_eq(mask, ROUTER_CHANNEL_BIT(CMN_CHANNEL_SMS));

    cr_expect_neq(router_channels_parse_list("", &mask, err, sizeof err), 0);
    cr_expect(strstr(err, "empty") != NULL, "%s", err);
    cr_expect_neq(router_channels_parse_list("email,,sms", &mask, err, sizeof err), 0);
    cr_expect_neq(router_channels_parse_list("email,fax", &mask, err, sizeof err), 0);
    cr_expect(strstr(err, "unknown channel \"fax\"") != NULL, "%s", err);
    cr_expect_neq(router_channels_parse_list("a-very-long-channel-name-that-is-not-real", &mask, err, sizeof err), 0);
    cr_expect_neq(router_channels_parse_list(NULL, &mask, err, sizeof err), 0);
}
