/* th_prism.h - Stoplight Prism (npm @stoplight/prism-cli 5) as a validating
 * mock server of an OpenAPI description, for contract tests.
 *
 * `prism mock SPEC` answers each request with an example from SPEC when the
 * request satisfies the operation (path parameters, security, body schema:
 * required properties, types, enums, patterns, formats), and with 401, 415
 * or 422 and the violations when it does not. Pointing a service at it
 * proves the service's requests conform to the provider's own file.
 *
 * Prism is installed on first use with npm into CRM_BINARY_DIR/prism
 * (npm install --prefix ...), so a build directory carries its own copy and
 * nothing global changes. A missing npm or a failed install is an error with
 * a clear message, never a skipped test. */
#ifndef TH_PRISM_H
#define TH_PRISM_H

#include <stddef.h>

#include "th_proc.h"

/* The version range installed. */
#define TH_PRISM_PACKAGE "@stoplight/prism-cli@5"

typedef struct th_prism {
    th_proc_t proc;
    int port;
    char url[64]; /* "http://127.0.0.1:<port>" */
    int running;
} th_prism_t;

/* Makes sure the prism CLI is installed (installing it when missing; safe
 * when several test processes try at once) and writes its path into bin.
 * Returns 0, or -1 with a one-paragraph reason in errstr. */
int th_prism_install(char *bin, size_t binlen, char *errstr, size_t errlen);

/* Installs if needed, starts `prism mock -h 127.0.0.1 -p <free port> spec`
 * and waits until it answers HTTP (up to 120 s: the spec may be large).
 * Returns 0, or -1 with the reason in errstr (the log path included). */
int th_prism_start(th_prism_t *p, const char *spec, char *errstr, size_t errlen);

/* Stops the mock (SIGTERM, then SIGKILL). Safe on a stopped one. */
void th_prism_stop(th_prism_t *p);

#endif
