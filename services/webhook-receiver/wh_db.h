/* wh_db.h - the receiver's PostgreSQL reads and its one write.
 *
 * The receiver keeps no state of its own; it reads what others project:
 *   client_contacts     which clients a phone or email belongs to (the
 *                       router writes it), for opt-outs;
 *   client_preferences  a client's current snapshot, so an opt-out changes
 *                       one flag and keeps the rest;
 *   communications      the communication of a provider message id, for
 *                       receipts that carry no id of ours;
 * and writes one thing: conversations.last_inbound_at for a WhatsApp
 * inbound, so the 24-hour window opens before the projector catches up
 * (the projector does the same upsert; both only ever move it forward).
 *
 * HTTP handlers run on several threads and a libpq connection serves one at
 * a time, so each call borrows a connection from a small pool. Connections
 * open lazily and reopen after a server restart (cmn_pg_ensure): the
 * receiver starts, and keeps answering status callbacks, while PostgreSQL
 * is down. Thread-safe. */
#ifndef WH_DB_H
#define WH_DB_H

#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/crypto.h"
#include "crm/uuid.h"

typedef struct wh_db wh_db_t;

/* A pool of size connections to url (copied), each call waiting at most
 * timeout_ms for a connection. NULL with the reason in errstr (never the
 * URL, which may hold a password). */
wh_db_t *wh_db_new(const char *url, size_t size, int timeout_ms, char *errstr, size_t errlen);
void wh_db_destroy(wh_db_t *db);

#define WH_DB_MAX_CLIENTS 100

/* The client ids (malloc'd each, in *ids, up to WH_DB_MAX_CLIENTS, sorted)
 * of tenant whose address hash is hash on any of channels (a
 * NULL-terminated list of channel names). The caller frees each id and the
 * array (wh_db_ids_free). Returns 0 (maybe with *n 0), CMN_ERR_DB or
 * CMN_ERR_TIMEOUT with the reason in errstr. */
int wh_db_clients(wh_db_t *db, const char *tenant_id, const char *const *channels,
                  const unsigned char hash[CMN_ADDRESS_HASH_LEN], char ***ids, size_t *n, char *errstr,
                  size_t errlen);
void wh_db_ids_free(char **ids, size_t n);

/* The stored snapshot (canonical JSON text) of one client appended to out.
 * Returns 0, 1 when there is none, or a negative code. */
int wh_db_snapshot(wh_db_t *db, const char *tenant_id, const char *client_id, cmn_buf_t *out, char *errstr,
                   size_t errlen);

/* Opens or extends the WhatsApp window of a phone: upserts conversations
 * (tenant, 'whatsapp', hash) with last_inbound_at = greatest(stored,
 * received) and window_expires_at = that + 24 h. unread_count is left to
 * the projector. Returns 0 or a negative code. */
int wh_db_open_window(wh_db_t *db, const char *tenant_id, const unsigned char hash[CMN_ADDRESS_HASH_LEN],
                      int64_t received_ms, char *errstr, size_t errlen);

/* The communication whose current provider message id is pmid: its id,
 * hop and attempt. Returns 0, 1 when none is known (yet), or a negative
 * code. */
int wh_db_find_message(wh_db_t *db, const char *pmid, char id[CMN_UUID_STR_LEN + 1], int *hop, int *attempt,
                       char *errstr, size_t errlen);

#endif
