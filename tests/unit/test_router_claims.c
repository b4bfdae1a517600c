/* test_router_claims.c - the pure parts of the claims module: in-batch
 * duplicate detection and PostgreSQL array literals. (The SQL itself runs
 * against a real PostgreSQL in tests/integration/test_router.c.) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "router_claims.h"

static router_claim_t key(const char *tenant, const char *request)
{
    return (router_claim_t){.tenant_id = tenant, .request_id = request, .communication_id = "x"};
}

Test(router_claims, later_occurrences_in_a_batch_are_duplicates)
{
    router_claim_t k[] = {key("t", "b"), key("t", "a"), key("t", "b"), key("u", "b"), key("t", "a"), key("t", "b")};
    cr_assert_eq(router_claims_mark_batch_duplicates(k, 6), 0);
    cr_expect_eq(k[0].state, ROUTER_CLAIM_UNKNOWN);
    cr_expect_eq(k[1].state, ROUTER_CLAIM_UNKNOWN);
    cr_expect_eq(k[2].state, ROUTER_CLAIM_BATCH_DUP);
    cr_expect_eq(k[3].state, ROUTER_CLAIM_UNKNOWN, "another tenant is another request");
    cr_expect_eq(k[4].state, ROUTER_CLAIM_BATCH_DUP);
    cr_expect_eq(k[5].state, ROUTER_CLAIM_BATCH_DUP);
}

Test(router_claims, lookup_keys_never_claim_nor_count_as_first)
{
    router_claim_t k[] = {key("t", "a"), key("t", "a"), key("t", "a")};
    k[0].lookup_only = 1;
    cr_assert_eq(router_claims_mark_batch_duplicates(k, 3), 0);
    cr_expect_eq(k[0].state, ROUTER_CLAIM_UNKNOWN);
    cr_expect_eq(k[1].state, ROUTER_CLAIM_UNKNOWN, "the first claiming key is the earliest non-lookup one");
    cr_expect_eq(k[2].state, ROUTER_CLAIM_BATCH_DUP);
}

Test(router_claims, many_keys)
{
    enum { N = 1000 };
    router_claim_t *k = calloc(N, sizeof *k);
    char (*ids)[16] = calloc(N, sizeof *ids);
    cr_assert(k != NULL && ids != NULL);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "r%d", i % 250);
        k[i] = key("default", ids[i]);
    }
    cr_assert_eq(router_claims_mark_batch_duplicates(k, N), 0);
    for (int i = 0; i < N; i++)
        cr_expect_eq(k[i].state, i < 250 ? ROUTER_CLAIM_UNKNOWN : ROUTER_CLAIM_BATCH_DUP, "key %d", i);
    free(ids);
    free(k);
}

Test(router_claims, empty_batch)
{
    cr_expect_eq(router_claims_mark_batch_duplicates(NULL, 0), 0);
}

Test(router_claims, text_array_literals_escape_quotes_and_backslashes)
{
    cmn_buf_t b = CMN_BUF_INIT;
    const char *items[] = {"plain", "with \"quote\"", "back\\slash", "{brace},comma", ""};
    cr_assert_eq(router_pg_text_array(&b, items, 5), 0);
    cr_expect_str_eq(b.data, "{\"plain\",\"with \\\"quote\\\"\",\"back\\\\slash\",\"{brace},comma\",\"\"}");
    cmn_buf_reset(&b);
    cr_assert_eq(router_pg_text_array(&b, items, 0), 0);
    cr_expect_str_eq(b.data, "{}");
    cmn_buf_free(&b);
}

Test(router_claims, state_names)
{
    cr_expect_str_eq(router_claim_state_name(ROUTER_CLAIM_NEW), "new");
    cr_expect_str_eq(router_claim_state_name(ROUTER_CLAIM_RESUME), "resume");
    cr_expect_str_eq(router_claim_state_name(ROUTER_CLAIM_DONE), "done");
    cr_expect_str_eq(router_claim_state_name(ROUTER_CLAIM_OWNED), "owned");
    cr_expect_str_eq(router_claim_state_name(ROUTER_CLAIM_BATCH_DUP), "batch_duplicate");
}

Test(router_claims, deferral_header_values)
{
    int64_t n = -1;
    cr_expect_eq(router_deferral_parse("1", 1, &n), 0);
    cr_expect_eq(n, 1);
    cr_expect_eq(router_deferral_parse("42", 2, &n), 0);
    cr_expect_eq(n, 42);
    cr_expect_eq(router_deferral_parse("1000000000", 10, &n), 0);
    cr_expect_eq(n, ROUTER_DEFERRAL_MAX);
    cr_expect_eq(router_deferral_parse("7xyz", 1, &n), 0, "only len bytes are read");
    cr_expect_eq(n, 7);
    const char *bad[] = {"", "0", "01", "-1", "+1", " 1", "1 ", "1a", "1000000001", "99999999999", "1.0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = -1;
        cr_expect_neq(router_deferral_parse(bad[i], strlen(bad[i]), &n), 0, "\"%s\" accepted", bad[i]);
        cr_expect_eq(n, 0, "\"%s\" leaves 0", bad[i]);
    }
    cr_expect_neq(router_deferral_parse(NULL, 0, &n), 0, "absent");
    cr_expect_eq(n, 0);
}

/* A returning deferred copy and a plain copy of the same request may share a
 * batch: they differ in their deferral number, so both reach the claims
 * table, which decides; equal numbers are batch duplicates. */
Test(router_claims, batch_duplicates_consider_the_deferral_number)
{
    router_claim_t k[] = {key("t", "a"), key("t", "a"), key("t", "a"), key("t", "a"), key("t", "a")};
    k[1].deferral = 1;
    k[2].deferral = 1;
    k[4].deferral = 2;
    cr_assert_eq(router_claims_mark_batch_duplicates(k, 5), 0);
    cr_expect_eq(k[0].state, ROUTER_CLAIM_UNKNOWN);
    cr_expect_eq(k[1].state, ROUTER_CLAIM_UNKNOWN);
    cr_expect_eq(k[2].state, ROUTER_CLAIM_BATCH_DUP, "a second copy of deferral 1");
    cr_expect_eq(k[3].state, ROUTER_CLAIM_BATCH_DUP, "a second plain copy");
    cr_expect_eq(k[4].state, ROUTER_CLAIM_UNKNOWN);
}

Test(router_claims, deferral_state_names)
{
    cr_expect_str_eq(router_claim_state_name(ROUTER_CLAIM_RETURN), "return");
    cr_expect_str_eq(router_claim_state_name(ROUTER_CLAIM_DEFERRED), "deferred");
}
