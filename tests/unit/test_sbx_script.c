/* The Twilio sandbox's scripted recipients: which trailing digits of To give
 * which answer (tools/sandbox-twilio/sbx_api.h). The sandbox's HTTP behaviour
 * is exercised by the SMS and WhatsApp integration suites; this pins the
 * table itself. */
#include <criterion/criterion.h>

#include "sbx_api.h"

Test(sbx_script, synchronous_refusals)
{
    sbx_script_t s;
    cr_assert(sbx_script_for("+33612321211", &s));
    cr_expect_eq(s.http_status, 400);
    cr_expect_eq(s.code, 21211);
    cr_assert(sbx_script_for("whatsapp:+33612321610", &s));
    cr_expect_eq(s.code, 21610);
    cr_assert(sbx_script_for("+14155520429", &s));
    cr_expect_eq(s.http_status, 429);
    cr_expect_eq(s.retry_after_s, 7);
}

Test(sbx_script, asynchronous_failures_are_accepted_first)
{
    sbx_script_t s;
    cr_assert(sbx_script_for("+33612330006", &s));
    cr_expect_eq(s.http_status, 201, "Twilio accepts, then the carrier fails it");
    cr_expect_eq(s.async_error, 30006);
    cr_assert(sbx_script_for("whatsapp:+33612363016", &s));
    cr_expect_eq(s.http_status, 201, "outside the window is reported in the callback");
    cr_expect_eq(s.async_error, 63016);
}

Test(sbx_script, ordinary_and_short_numbers_are_not_scripted)
{
    sbx_script_t s;
    cr_expect(!sbx_script_for("+33612345678", &s));
    cr_expect_eq(s.http_status, 201);
    cr_expect(!sbx_script_for("+1234", &s), "too few digits to carry a script");
    cr_expect(!sbx_script_for(NULL, &s));
}

Test(sbx_script, slow_answers_carry_their_delay)
{
    sbx_script_t s;
    cr_assert(sbx_script_for("+33612883000", &s));
    cr_expect_eq(s.http_status, 201);
    cr_expect_eq(s.delay_ms, 3000);
}
