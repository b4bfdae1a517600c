/* Unit tests for crm/buf.h. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"

Test(buf, starts_empty_and_appends)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_null(b.data);
    cr_assert_eq(cmn_buf_append(&b, "abc", 3), CMN_OK);
    cr_assert_eq(b.len, 3);
    cr_assert_str_eq(b.data, "abc");
    cr_assert_eq(cmn_buf_puts(&b, "de"), CMN_OK);
    cr_assert_eq(cmn_buf_putc(&b, 'f'), CMN_OK);
    cr_assert_str_eq(b.data, "abcdef");
    cr_assert_eq(b.len, 6);
    cr_assert_geq(b.cap, b.len + 1);
    cmn_buf_free(&b);
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.cap, 0);
}

Test(buf, zero_length_append_allocates_terminated_storage)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_buf_append(&b, NULL, 0), CMN_OK);
    cr_assert_not_null(b.data);
    cr_assert_str_eq(b.data, "");
    cmn_buf_free(&b);
}

Test(buf, grows_across_many_appends_and_keeps_binary)
{
    cmn_buf_t b = CMN_BUF_INIT;
    for (int i = 0; i < 10000; i++) {
        cr_assert_eq(cmn_buf_putc(&b, (char)('a' + i % 26)), CMN_OK);
    }
    cr_assert_eq(b.len, 10000);
    cr_assert_eq(b.data[10000], '\0');
    cr_assert_eq(b.data[26], 'a');
    cr_assert_eq(b.data[9999], (char)('a' + 9999 % 26));
    cmn_buf_reset(&b);
    cr_assert_eq(cmn_buf_append(&b, "a\0b", 3), CMN_OK);
    cr_assert_eq(b.len, 3);
    cr_assert_eq(memcmp(b.data, "a\0b", 4), 0);
    cmn_buf_free(&b);
}

Test(buf, printf_appends_formatted_text)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_buf_puts(&b, "x="), CMN_OK);
    cr_assert_eq(cmn_buf_printf(&b, "%d/%s/%05.1f", 42, "str", 3.14159), CMN_OK);
    cr_assert_str_eq(b.data, "x=42/str/003.1");
    cr_assert_eq(b.len, strlen("x=42/str/003.1"));
    /* A long result forces growth inside printf. */
    char big[1000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_eq(cmn_buf_printf(&b, "[%s]", big), CMN_OK);
    cr_assert_eq(b.len, strlen("x=42/str/003.1") + 1001);
    cr_assert_eq(b.data[b.len - 1], ']');
    cr_assert_eq(b.data[b.len], '\0');
    cmn_buf_free(&b);
}

Test(buf, printf_empty_result)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_buf_printf(&b, "%s", ""), CMN_OK);
    cr_assert_eq(b.len, 0);
    cr_assert_str_eq(b.data, "");
    cmn_buf_free(&b);
}

Test(buf, reset_keeps_storage)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_buf_puts(&b, "hello world"), CMN_OK);
    char *storage = b.data;
    size_t cap = b.cap;
    cmn_buf_reset(&b);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.data, storage);
    cr_assert_eq(b.cap, cap);
    cr_assert_str_eq(b.data, "");
    cmn_buf_free(&b);
    /* Resetting an untouched buffer is harmless. */
    cmn_buf_reset(&b);
    cr_assert_null(b.data);
}

Test(buf, steal_hands_over_storage)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_buf_puts(&b, "owned"), CMN_OK);
    char *s = cmn_buf_steal(&b);
    cr_assert_str_eq(s, "owned");
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.cap, 0);
    free(s);
    /* The buffer is reusable after a steal. */
    cr_assert_eq(cmn_buf_puts(&b, "again"), CMN_OK);
    cr_assert_str_eq(b.data, "again");
    cmn_buf_free(&b);
}

Test(buf, steal_of_empty_buffer_is_empty_string)
{
    cmn_buf_t b = CMN_BUF_INIT;
    char *s = cmn_buf_steal(&b);
    cr_assert_not_null(s);
    cr_assert_str_eq(s, "");
    free(s);
}

Test(buf, invalid_arguments)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_buf_append(NULL, "a", 1), CMN_ERR_INVALID);
    cr_assert_eq(cmn_buf_append(&b, NULL, 1), CMN_ERR_INVALID);
    cr_assert_eq(cmn_buf_puts(&b, NULL), CMN_ERR_INVALID);
    cr_assert_eq(cmn_buf_put_json_string(&b, NULL), CMN_ERR_INVALID);
    cr_assert_eq(cmn_buf_put_json_string(NULL, "x"), CMN_ERR_INVALID);
    cr_assert_null(cmn_buf_steal(NULL));
    cmn_buf_free(NULL);
    cmn_buf_reset(NULL);
    cr_assert_null(b.data);
}

Test(buf, append_length_overflow_is_refused)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_buf_puts(&b, "abc"), CMN_OK);
    cr_assert_eq(cmn_buf_append(&b, "x", SIZE_MAX - 1), CMN_ERR_OVERFLOW);
    /* The buffer is untouched by the refused append. */
    cr_assert_eq(b.len, 3);
    cr_assert_str_eq(b.data, "abc");
    cmn_buf_free(&b);
}

static char *json_of(const char *s)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_buf_put_json_string(&b, s), CMN_OK);
    return cmn_buf_steal(&b);
}

#define assert_json(in, expected)                                                                  \
    do {                                                                                           \
        char *got_ = json_of(in);                                                                  \
        cr_assert_str_eq(got_, expected);                                                          \
        free(got_);                                                                                \
    } while (0)

Test(buf_json, plain_and_empty)
{
    assert_json("", "\"\"");
    assert_json("hello", "\"hello\"");
}

Test(buf_json, quotes_and_backslash)
{
    assert_json("say \"hi\"", "\"say \\\"hi\\\"\"");
    assert_json("C:\\dir\\", "\"C:\\\\dir\\\\\"");
    /* The solidus needs no escaping in JSON and stays as is. */
    assert_json("a/b", "\"a/b\"");
}

Test(buf_json, control_characters)
{
    assert_json("a\nb\rc\td", "\"a\\nb\\rc\\td\"");
    assert_json("\b\f", "\"\\b\\f\"");
    assert_json("\x01\x1f", "\"\\u0001\\u001f\"");
    assert_json("\x1b[31m", "\"\\u001b[31m\"");
    /* DEL is not a control character for JSON and passes through. */
    assert_json("\x7f", "\"\x7f\"");
    /* 0x20 is the first unescaped character. */
    assert_json(" ", "\" \"");
}

Test(buf_json, utf8_passes_through_unchanged)
{
    assert_json("Zoë 😀 日本", "\"Zoë 😀 日本\"");
    /* Invalid UTF-8 is not repaired either: bytes are copied as they are. */
    assert_json("\xff\xfe", "\"\xff\xfe\"");
}

Test(buf_json, appends_after_existing_content)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_buf_puts(&b, "{\"k\":"), CMN_OK);
    cr_assert_eq(cmn_buf_put_json_string(&b, "v\""), CMN_OK);
    cr_assert_eq(cmn_buf_putc(&b, '}'), CMN_OK);
    cr_assert_str_eq(b.data, "{\"k\":\"v\\\"\"}");
    cmn_buf_free(&b);
}
