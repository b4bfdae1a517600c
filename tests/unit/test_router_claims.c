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
