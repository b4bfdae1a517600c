/* th_smtp.h - the email sandbox for the tests: a real SMTP server from
 * Debian's python3-aiosmtpd (tools/smtp-sandbox), with STARTTLS using a CA
 * made for the test run, AUTH PLAIN/LOGIN, and every received message stored
 * in a Maildir. */
#ifndef TH_SMTP_H
#define TH_SMTP_H

#include <stddef.h>

typedef struct th_smtp {
    int port;
    char dir[512];       /* working directory: maildir/, ca.pem, server cert */
    char maildir[600];
    char ca_file[600];   /* trust this CA to verify the server (TLS verification stays on) */
    char username[64], password[64];
    int pid;
} th_smtp_t;

/* Starts the sandbox on a free port under CRM_BINARY_DIR/test-smtp/<name>.
 * Scripted recipients: a local part "fail550..." / "fail451..." is refused
 * at RCPT with that code; "slow3000..." gets its DATA reply 3000 ms late.
 * Returns 0 or -1. */
int th_smtp_start(th_smtp_t *s, const char *name);
void th_smtp_stop(th_smtp_t *s);
/* Number of messages in the Maildir (new/ and cur/). */
int th_smtp_count(const th_smtp_t *s);
/* Waits until at least n messages arrived or timeout_ms; returns the count. */
int th_smtp_wait(const th_smtp_t *s, int n, int timeout_ms);
/* Reads the i-th message (sorted by name) as raw RFC 5322 text into a malloc'd string. */
char *th_smtp_message(const th_smtp_t *s, int i);

#endif
