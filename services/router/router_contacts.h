/* router_contacts.h - the address -> client index (client_contacts, migration
 * 0005) that turns an inbound "STOP" into an opt-out of the right clients.
 *
 * The router is the one service that sees a client id next to its addresses,
 * so it records, for every request it routes, which client each of the
 * request's SMS, WhatsApp and email addresses belongs to. Addresses are never
 * stored: only HMAC-SHA256(CRM_DATA_KEY, address) (crm/crypto.h), of the
 * E.164 number with its '+' for sms/whatsapp and of the lower-cased address
 * for email, which is what the webhook receiver computes from a reply's
 * sender. One upsert statement per batch (last_seen_at moves on a repeat). */
#ifndef ROUTER_CONTACTS_H
#define ROUTER_CONTACTS_H

#include <libpq-fe.h>
#include <stddef.h>

#include "crm/channel.h"
#include "crm/crypto.h"
#include "crm/request.h"

typedef struct router_contact {
    const char *tenant_id; /* borrowed from the request */
    const char *client_id; /* borrowed from the request */
    cmn_channel_t channel;
    char hash_hex[2 * CMN_ADDRESS_HASH_LEN + 1];
} router_contact_t;

/* The canonical form of an address before hashing: the E.164 spelling of a
 * phone number (cmn_phone_check; the text itself when libphonenumber does
 * not know it), the ASCII-lower-cased email address. Writes into out.
 * Returns 0, CMN_ERR_INVALID (no address) or CMN_ERR_OVERFLOW. Pure. */
int router_contact_canonical(cmn_channel_t c, const char *address, char *out, size_t outlen);

/* Appends to out (room for CMN_CHANNEL__COUNT more) one contact per address
 * of r's recipient (sms: phone, whatsapp: whatsapp, email: email), keyed by
 * key (CRM_DATA_KEY, borrowed). A request without client_id yields none.
 * Returns 0 or CMN_ERR_INVALID (bad key). Pure. */
int router_contacts_of(const cmn_request_t *r, const char *key, router_contact_t *out, size_t *n);

/* Upserts the n contacts in one statement (duplicates allowed). conn and
 * rows are borrowed. Returns 0, CMN_ERR_UNAVAILABLE, CMN_ERR_DB (message in
 * errstr) or CMN_ERR_NOMEM. */
int router_contacts_upsert(PGconn *conn, const router_contact_t *rows, size_t n, char *errstr, size_t errlen);

#endif
