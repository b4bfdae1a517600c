/* signal.c - the stop flag and its handler. */
#include "crm/signal.h"

#include <string.h>

#include "crm/err.h"

/* The one global of the project: written only by the handler below (and
 * tests), read by service loops. sig_atomic_t makes the write atomic with
 * respect to the signal; volatile stops the compiler caching it in loops. */
volatile sig_atomic_t cmn_stop_requested = 0;

/* Async-signal-safe by construction: it does nothing but set the flag.
 * Logging, draining and exiting happen in the service's own loop. */
static void on_stop_signal(int signo)
{
    (void)signo;
    cmn_stop_requested = 1;
}

int cmn_signal_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART keeps a signal from failing unrelated blocking calls inside
     * libraries with EINTR; our loops wait with timeouts and check the flag. */
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
        return CMN_ERR_IO;
    }
    /* A peer closing a socket must surface as EPIPE from write(), not kill
     * the process. */
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    if (sigaction(SIGPIPE, &ign, NULL) != 0) {
        return CMN_ERR_IO;
    }
    return CMN_OK;
}
