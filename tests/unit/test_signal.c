/* Unit tests for crm/signal.h. Each Criterion test runs in its own process,
 * so raising signals here affects only that test. */
#include <criterion/criterion.h>
#include <signal.h>
#include <unistd.h>

#include "crm/err.h"
#include "crm/signal.h"

Test(signal, sigterm_sets_flag_and_does_not_kill)
{
    cr_assert_eq(cmn_stop_requested, 0);
    cr_assert_eq(cmn_signal_install(), CMN_OK);
    cr_assert_eq(raise(SIGTERM), 0);
    cr_assert_eq(cmn_stop_requested, 1);
}

Test(signal, sigint_sets_flag)
{
    cr_assert_eq(cmn_signal_install(), CMN_OK);
    cr_assert_eq(raise(SIGINT), 0);
    cr_assert_eq(cmn_stop_requested, 1);
}

Test(signal, sigpipe_is_ignored)
{
    cr_assert_eq(cmn_signal_install(), CMN_OK);
    struct sigaction sa;
    cr_assert_eq(sigaction(SIGPIPE, NULL, &sa), 0);
    cr_assert_eq(sa.sa_handler, SIG_IGN);
    /* Writing to a pipe without a reader fails with EPIPE instead of killing. */
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    close(fds[0]);
    cr_assert_eq(write(fds[1], "x", 1), -1);
    close(fds[1]);
    cr_assert_eq(cmn_stop_requested, 0, "SIGPIPE does not request a stop");
}

Test(signal, installing_twice_is_fine)
{
    cr_assert_eq(cmn_signal_install(), CMN_OK);
    cr_assert_eq(cmn_signal_install(), CMN_OK);
    struct sigaction sa;
    cr_assert_eq(sigaction(SIGTERM, NULL, &sa), 0);
    cr_assert_neq(sa.sa_handler, SIG_DFL);
    cr_assert_neq(sa.sa_handler, SIG_IGN);
}
