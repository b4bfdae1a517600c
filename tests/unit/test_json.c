/* Unit tests for crm/json.h. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/json.h"

static json_object *parse_ok(const char *s)
{
    char err[256] = "untouched";
    json_object *obj = cmn_json_parse(s, strlen(s), err, sizeof err);
    cr_assert_not_null(obj, "parse of '%s' failed: %s", s, err);
    return obj;
}

/* Asserts that s is rejected and that the message contains `needle`. */
static void parse_fails(const char *s, size_t len, const char *needle)
{
    char err[256] = "";
    json_object *obj = cmn_json_parse(s, len, err, sizeof err);
    cr_assert_null(obj, "'%.*s' was accepted", (int)len, s);
    cr_assert_neq(err[0], '\0', "no message for '%.*s'", (int)len, s);
    cr_assert_not_null(strstr(err, needle), "message '%s' lacks '%s'", err, needle);
}

Test(json_parse, objects_and_scalars)
{
    json_object *obj = parse_ok("{\"a\":1,\"b\":[true,null,\"x\"]}");
    cr_assert(json_object_is_type(obj, json_type_object));
    json_object_put(obj);
    /* Top-level scalars have no terminator of their own; they must still
     * parse when the input is exactly the number. */
    obj = parse_ok("123");
    cr_assert_eq(json_object_get_int64(obj), 123);
    json_object_put(obj);
    obj = parse_ok("-1.5e3");
    cr_assert_float_eq(json_object_get_double(obj), -1500.0, 1e-9);
    json_object_put(obj);
    obj = parse_ok("\"s\"");
    cr_assert_str_eq(json_object_get_string(obj), "s");
    json_object_put(obj);
    obj = parse_ok("true");
    cr_assert(json_object_get_boolean(obj));
    json_object_put(obj);
}

Test(json_parse, surrounding_whitespace_is_fine)
{
    json_object *obj = parse_ok(" \t\r\n{\"a\":1} \n\r\t ");
    int64_t v = 0;
    cr_assert_eq(cmn_json_get_int64(obj, "a", &v), CMN_OK);
    cr_assert_eq(v, 1);
    json_object_put(obj);
    obj = parse_ok("42 \n");
    cr_assert_eq(json_object_get_int64(obj), 42);
    json_object_put(obj);
}

Test(json_parse, not_nul_terminated)
{
    /* Only the first len bytes count; what follows in memory is ignored. */
    const char data[] = "{\"a\":\"b\"}GARBAGE";
    char err[128];
    json_object *obj = cmn_json_parse(data, 9, err, sizeof err);
    cr_assert_not_null(obj, "%s", err);
    cr_assert_str_eq(cmn_json_get_string(obj, "a"), "b");
    json_object_put(obj);
    /* A number cut by len: "12" out of "1234". */
    obj = cmn_json_parse("1234", 2, err, sizeof err);
    cr_assert_not_null(obj, "%s", err);
    cr_assert_eq(json_object_get_int64(obj), 12);
    json_object_put(obj);
    /* A buffer with no NUL at all, on the heap so a reader past len would be
     * caught by sanitizers. */
    char *heap = malloc(7);
    memcpy(heap, "[1,2,3]", 7);
    obj = cmn_json_parse(heap, 7, err, sizeof err);
    cr_assert_not_null(obj, "%s", err);
    cr_assert_eq(json_object_array_length(obj), 3);
    json_object_put(obj);
    free(heap);
}

Test(json_parse, trailing_garbage_rejected_with_position)
{
    parse_fails("{} x", 4, "offset 3");
    parse_fails("{}{}", 4, "offset 2");
    parse_fails("1 2", 3, "offset 2");
    parse_fails("[1]]", 4, "offset 3");
}

Test(json_parse, malformed_input)
{
    parse_fails("", 0, "offset 0");
    parse_fails("   ", 3, "end of");
    parse_fails("{\"a\":", 5, "end of");
    parse_fails("{\"a\" 1}", 7, "offset");
    parse_fails("[1,]", 4, "offset");
    parse_fails("nul", 3, "offset");
    parse_fails("\"unterminated", 13, "end of");
    parse_fails("+1", 2, "offset 0");
    parse_fails("tRue", 4, "offset");
}

Test(json_parse, embedded_nul_rejected)
{
    parse_fails("{\"a\":\"x\0y\"}", 11, "offset 7");
    parse_fails("{}\0", 3, "offset 2");
}

Test(json_parse, invalid_utf8_rejected)
{
    parse_fails("\"\xff\"", 3, "offset");
}

static char *nested(int depth)
{
    char *s = malloc((size_t)depth * 2 + 1);
    memset(s, '[', (size_t)depth);
    memset(s + depth, ']', (size_t)depth);
    s[depth * 2] = '\0';
    return s;
}

Test(json_parse, depth_limit_is_64)
{
    char err[256];
    char *ok = nested(64);
    json_object *obj = cmn_json_parse(ok, strlen(ok), err, sizeof err);
    cr_assert_not_null(obj, "depth 64 must parse: %s", err);
    json_object_put(obj);
    free(ok);

    char *deep = nested(65);
    obj = cmn_json_parse(deep, strlen(deep), err, sizeof err);
    cr_assert_null(obj);
    cr_assert_not_null(strstr(err, "nesting too deep"), "message: %s", err);
    free(deep);

    /* A hostile document far beyond the limit fails cleanly too. */
    char *hostile = nested(100000);
    obj = cmn_json_parse(hostile, strlen(hostile), err, sizeof err);
    cr_assert_null(obj);
    free(hostile);
}

Test(json_parse, null_and_tiny_errstr)
{
    json_object *obj = cmn_json_parse("{", 1, NULL, 0);
    cr_assert_null(obj);
    char err[8];
    obj = cmn_json_parse("{", 1, err, sizeof err);
    cr_assert_null(obj);
    cr_assert_eq(strlen(err), sizeof err - 1, "message is truncated, still terminated");
    obj = cmn_json_parse(NULL, 3, err, sizeof err);
    cr_assert_null(obj);
}

Test(json_get, typed_getters)
{
    json_object *obj = parse_ok("{\"s\":\"str\",\"i\":-7,\"d\":1.5,\"o\":{\"x\":1},\"a\":[1],"
                                "\"n\":null,\"b\":false,\"is\":\"15\"}");
    cr_assert_str_eq(cmn_json_get_string(obj, "s"), "str");
    cr_assert_null(cmn_json_get_string(obj, "i"));
    cr_assert_null(cmn_json_get_string(obj, "n"));
    cr_assert_null(cmn_json_get_string(obj, "missing"));

    cr_assert_not_null(cmn_json_get_object(obj, "o"));
    cr_assert_null(cmn_json_get_object(obj, "a"));
    cr_assert_not_null(cmn_json_get_array(obj, "a"));
    cr_assert_null(cmn_json_get_array(obj, "o"));
    cr_assert_null(cmn_json_get_array(obj, "missing"));

    int64_t v = 99;
    cr_assert_eq(cmn_json_get_int64(obj, "i", &v), CMN_OK);
    cr_assert_eq(v, -7);
    v = 99;
    cr_assert_eq(cmn_json_get_int64(obj, "d", &v), CMN_ERR_INVALID);
    cr_assert_eq(cmn_json_get_int64(obj, "is", &v), CMN_ERR_INVALID);
    cr_assert_eq(cmn_json_get_int64(obj, "n", &v), CMN_ERR_INVALID);
    cr_assert_eq(cmn_json_get_int64(obj, "b", &v), CMN_ERR_INVALID);
    cr_assert_eq(cmn_json_get_int64(obj, "missing", &v), CMN_ERR_NOTFOUND);
    cr_assert_eq(v, 99, "output untouched on error");
    cr_assert_eq(cmn_json_get_int64(obj, "i", NULL), CMN_ERR_INVALID);

    /* has() tells absent from present-but-null. */
    cr_assert(cmn_json_has(obj, "n"));
    cr_assert(cmn_json_has(obj, "s"));
    cr_assert_not(cmn_json_has(obj, "missing"));
    json_object_put(obj);
}

Test(json_get, non_objects_and_nulls)
{
    json_object *arr = parse_ok("[1,2]");
    int64_t v = 0;
    cr_assert_not(cmn_json_has(arr, "0"));
    cr_assert_null(cmn_json_get_string(arr, "0"));
    cr_assert_eq(cmn_json_get_int64(arr, "0", &v), CMN_ERR_NOTFOUND);
    json_object_put(arr);
    cr_assert_not(cmn_json_has(NULL, "a"));
    cr_assert_null(cmn_json_get_string(NULL, "a"));
    cr_assert_null(cmn_json_get_object(NULL, "a"));
    json_object *obj = parse_ok("{\"a\":1}");
    cr_assert_not(cmn_json_has(obj, NULL));
    json_object_put(obj);
}

Test(json_get, int64_limits)
{
    json_object *obj = parse_ok("{\"max\":9223372036854775807,\"min\":-9223372036854775808,"
                                "\"over\":9223372036854775808,\"huge\":18446744073709551615}");
    int64_t v = 0;
    cr_assert_eq(cmn_json_get_int64(obj, "max", &v), CMN_OK);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(cmn_json_get_int64(obj, "min", &v), CMN_OK);
    cr_assert_eq(v, INT64_MIN);
    cr_assert_eq(cmn_json_get_int64(obj, "over", &v), CMN_ERR_INVALID);
    cr_assert_eq(cmn_json_get_int64(obj, "huge", &v), CMN_ERR_INVALID);
    json_object_put(obj);
}

Test(json_build, add_and_serialise_compactly)
{
    json_object *obj = json_object_new_object();
    cr_assert_eq(cmn_json_add_string(obj, "url", "https://x.test/a/b"), CMN_OK);
    cr_assert_eq(cmn_json_add_string(obj, "skip", NULL), CMN_OK);
    cr_assert_eq(cmn_json_add_int64(obj, "n", INT64_MIN), CMN_OK);
    cr_assert_eq(cmn_json_add_string(obj, "q", "a\"b\n"), CMN_OK);
    cr_assert_not(cmn_json_has(obj, "skip"));

    cmn_buf_t out = CMN_BUF_INIT;
    cr_assert_eq(cmn_buf_puts(&out, ">"), CMN_OK);
    cr_assert_eq(cmn_json_to_buf(obj, &out), CMN_OK);
    cr_assert_str_eq(out.data,
                     ">{\"url\":\"https://x.test/a/b\",\"n\":-9223372036854775808,\"q\":\"a\\\"b\\n\"}");
    cmn_buf_free(&out);

    /* Adding an existing key replaces its value. */
    cr_assert_eq(cmn_json_add_int64(obj, "n", 5), CMN_OK);
    int64_t v = 0;
    cr_assert_eq(cmn_json_get_int64(obj, "n", &v), CMN_OK);
    cr_assert_eq(v, 5);
    json_object_put(obj);
}

Test(json_build, round_trip_through_parse)
{
    json_object *obj = json_object_new_object();
    cr_assert_eq(cmn_json_add_string(obj, "name", "Zoë 😀"), CMN_OK);
    cmn_buf_t out = CMN_BUF_INIT;
    cr_assert_eq(cmn_json_to_buf(obj, &out), CMN_OK);
    char err[128];
    json_object *back = cmn_json_parse(out.data, out.len, err, sizeof err);
    cr_assert_not_null(back, "%s", err);
    cr_assert_str_eq(cmn_json_get_string(back, "name"), "Zoë 😀");
    json_object_put(back);
    json_object_put(obj);
    cmn_buf_free(&out);
}

Test(json_build, errors)
{
    json_object *arr = json_object_new_array();
    cr_assert_eq(cmn_json_add_string(arr, "k", "v"), CMN_ERR_INVALID);
    cr_assert_eq(cmn_json_add_int64(arr, "k", 1), CMN_ERR_INVALID);
    cr_assert_eq(cmn_json_add_string(NULL, "k", "v"), CMN_ERR_INVALID);
    cr_assert_eq(cmn_json_add_int64(NULL, "k", 1), CMN_ERR_INVALID);
    json_object *obj = json_object_new_object();
    cr_assert_eq(cmn_json_add_string(obj, NULL, "v"), CMN_ERR_INVALID);
    cr_assert_eq(cmn_json_to_buf(obj, NULL), CMN_ERR_INVALID);
    cmn_buf_t out = CMN_BUF_INIT;
    cr_assert_eq(cmn_json_to_buf(NULL, &out), CMN_OK);
    cr_assert_str_eq(out.data, "null");
    cmn_buf_free(&out);
    json_object_put(obj);
    json_object_put(arr);
}
