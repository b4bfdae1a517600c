/* signal.h - the stop flag, the only global of every service.
 *
 * SIGTERM and SIGINT set cmn_stop_requested; the handler does nothing else.
 * Service loops check it, stop intake, drain and exit. */
#ifndef CRM_SIGNAL_H
#define CRM_SIGNAL_H

#include <signal.h>

extern volatile sig_atomic_t cmn_stop_requested;

/* Installs the handler for SIGTERM and SIGINT and ignores SIGPIPE. */
int cmn_signal_install(void);

#endif
