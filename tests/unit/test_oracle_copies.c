/* The sandboxes validate against vendored copies of the providers' official
 * files (so the demo needs nothing outside the repository); these tests fail
 * when a copy drifts from the source of truth in ../shared/oracles. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void assert_same(const char *vendored, const char *original)
{
    size_t a_len = 0, b_len = 0;
    char *a = slurp(vendored, &a_len);
    char *b = slurp(original, &b_len);
    cr_assert_gt(b_len, 0, "%s is empty", original);
    cr_assert_eq(a_len, b_len, "%s differs in size from %s", vendored, original);
    cr_assert_eq(memcmp(a, b, a_len), 0, "%s differs from %s", vendored, original);
    free(a);
    free(b);
}

Test(oracle_copies, twilio_spec_matches_shared)
{
    assert_same(CRM_SOURCE_DIR "/tools/sandbox-twilio/oracles/twilio_api_v2010.json",
                CRM_SHARED_DIR "/oracles/twilio/twilio_api_v2010.json");
}

Test(oracle_copies, twilio_examples_match_shared)
{
    assert_same(CRM_SOURCE_DIR "/tools/sandbox-twilio/oracles/webhook_and_error_examples.json",
                CRM_SHARED_DIR "/oracles/twilio/webhook_and_error_examples.json");
}

Test(oracle_copies, meta_examples_match_shared)
{
    assert_same(CRM_SOURCE_DIR "/tools/sandbox-meta/oracles/cloud_api_examples.json",
                CRM_SHARED_DIR "/oracles/meta/cloud_api_examples.json");
}
