/* Unit tests of the control-request parser of `crmctl embedded-kafka
 * --control-port` (crmctl_kafka.h). */
#include <criterion/criterion.h>
#include <string.h>

#include "crm/err.h"
#include "crmctl_kafka.h"

Test(crmctl_faults, status_and_clear)
{
    crmctl_fault_t f;
    cr_assert_eq(crmctl_fault_parse("GET", "/status", NULL, 3, &f, NULL, NULL, 0), 0);
    cr_assert_eq(f.op, CRMCTL_FAULT_STATUS);
    cr_assert_eq(crmctl_fault_parse("POST", "/status", NULL, 3, &f, NULL, NULL, 0), CMN_ERR_STATE);
    cr_assert_eq(crmctl_fault_parse("POST", "/faults/clear", NULL, 3, &f, NULL, NULL, 0), 0);
    cr_assert_eq(f.op, CRMCTL_FAULT_CLEAR);
    cr_assert_eq(crmctl_fault_parse("GET", "/faults/clear", NULL, 3, &f, NULL, NULL, 0), CMN_ERR_STATE);
}

Test(crmctl_faults, request_errors_with_defaults_and_arguments)
{
    crmctl_fault_t f;
    cr_assert_eq(crmctl_fault_parse("POST", "/faults/produce", NULL, 3, &f, NULL, NULL, 0), 0);
    cr_assert_eq(f.op, CRMCTL_FAULT_REQUEST_ERRORS);
    cr_assert_eq(f.api, CRMCTL_API_PRODUCE);
    cr_assert_eq(f.count, 1);
    cr_assert_eq(f.error, 6, "NOT_LEADER_FOR_PARTITION by default");
    cr_assert_eq(f.broker, 0, "cluster-wide by default");
    crmctl_fault_args_t a = {.count = "25", .error = "request_timed_out", .broker = "2"};
    cr_assert_eq(crmctl_fault_parse("POST", "/faults/fetch", &a, 3, &f, NULL, NULL, 0), 0);
    cr_assert_eq(f.api, CRMCTL_API_FETCH);
    cr_assert_eq(f.count, 25);
    cr_assert_eq(f.error, 7);
    cr_assert_eq(f.broker, 2);
}

Test(crmctl_faults, brokers_down_up_and_rtt)
{
    crmctl_fault_t f;
    cr_assert_eq(crmctl_fault_parse("POST", "/brokers/3/down", NULL, 3, &f, NULL, NULL, 0), 0);
    cr_assert_eq(f.op, CRMCTL_FAULT_BROKER_DOWN);
    cr_assert_eq(f.broker, 3);
    cr_assert_eq(crmctl_fault_parse("POST", "/brokers/1/up", NULL, 3, &f, NULL, NULL, 0), 0);
    cr_assert_eq(f.op, CRMCTL_FAULT_BROKER_UP);
    crmctl_fault_args_t a = {.ms = "1500"};
    cr_assert_eq(crmctl_fault_parse("POST", "/brokers/2/rtt", &a, 3, &f, NULL, NULL, 0), 0);
    cr_assert_eq(f.op, CRMCTL_FAULT_RTT);
    cr_assert_eq(f.rtt_ms, 1500);
    cr_assert_eq(crmctl_fault_parse("GET", "/brokers/2/down", NULL, 3, &f, NULL, NULL, 0), CMN_ERR_STATE);
}

Test(crmctl_faults, bad_arguments_name_the_field)
{
    crmctl_fault_t f;
    const char *field = NULL;
    char why[128];
    struct {
        const char *path;
        crmctl_fault_args_t a;
        const char *field;
    } cases[] = {
        {"/faults/produce", {.count = "0"}, "count"},
        {"/faults/produce", {.count = "100001"}, "count"},
        {"/faults/produce", {.count = "3x"}, "count"},
        {"/faults/produce", {.error = "NO_SUCH_ERROR"}, "error"},
        {"/faults/produce", {.error = "-185"}, "error"},
        {"/faults/produce", {.error = "0"}, "error"},
        {"/faults/fetch", {.broker = "4"}, "broker"},
        {"/brokers/0/down", {0}, "broker"},
        {"/brokers/4/up", {0}, "broker"},
        {"/brokers/x/up", {0}, "broker"},
        {"/brokers/1/rtt", {0}, "ms"},
        {"/brokers/1/rtt", {.ms = "60001"}, "ms"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        why[0] = '\0';
        cr_assert_eq(crmctl_fault_parse("POST", cases[i].path, &cases[i].a, 3, &f, &field, why, sizeof(why)),
                     CMN_ERR_INVALID, "case %zu", i);
        cr_assert_str_eq(field, cases[i].field, "case %zu", i);
        cr_assert_neq(why[0], '\0', "case %zu says why", i);
    }
}

Test(crmctl_faults, unknown_paths_are_not_found)
{
    crmctl_fault_t f;
    const char *paths[] = {"/", "/faults", "/faults/commit", "/brokers/1", "/brokers/1/reboot", "/brokers//down",
                           "/statuses", NULL};
    for (size_t i = 0; paths[i] != NULL; i++)
        cr_assert_eq(crmctl_fault_parse("POST", paths[i], NULL, 3, &f, NULL, NULL, 0), CMN_ERR_NOTFOUND, "%s",
                     paths[i]);
}

Test(crmctl_faults, error_codes_by_name_or_number)
{
    int code = 0;
    cr_assert_eq(crmctl_fault_error_code("NOT_LEADER_FOR_PARTITION", &code), 0);
    cr_assert_eq(code, 6);
    cr_assert_eq(crmctl_fault_error_code("ERR_REQUEST_TIMED_OUT", &code), 0);
    cr_assert_eq(code, 7);
    cr_assert_eq(crmctl_fault_error_code("7", &code), 0);
    cr_assert_eq(code, 7);
    cr_assert_eq(crmctl_fault_error_code("_TRANSPORT", &code), CMN_ERR_INVALID, "client-side errors are not broker answers");
    cr_assert_eq(crmctl_fault_error_code("", &code), CMN_ERR_INVALID);
    cr_assert_eq(crmctl_fault_error_code(NULL, &code), CMN_ERR_INVALID);
}
