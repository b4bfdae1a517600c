/* wh_twilio.h - Twilio's messaging webhooks: status callbacks and inbound
 * messages (SMS and WhatsApp), and the TwiML answers.
 *
 * Status callbacks reach the receiver at the StatusCallback URL the SMS and
 * WhatsApp workers build: <public URL>/twilio/status?communication_id=<uuid>&hop=<n>&attempt=<n>.
 * Twilio signs that URL, so those ids are as trustworthy as the form.
 * Pure: no I/O. */
#ifndef WH_TWILIO_H
#define WH_TWILIO_H

#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/inbound.h"
#include "wh_form.h"
#include "wh_status.h"

/* Fills r (borrowing from form and query) from a status callback: the
 * form's MessageSid (or SmsSid), MessageStatus (or SmsStatus), ErrorCode,
 * ErrorMessage, From/To ("whatsapp:" means the WhatsApp channel), and the
 * query's communication_id, hop and attempt (all optional; when present
 * they must be a UUID and integers 0..1000000). now_ms is the occurred_at
 * (Twilio sends no event time). Returns 0 or CMN_ERR_INVALID with
 * "field: reason" in errstr. */
int wh_twilio_status_parse(const wh_form_t *form, const wh_form_t *query, int64_t now_ms, wh_receipt_t *r,
                           char *errstr, size_t errlen);

/* Fills m (zeroed; owns copies) from an inbound message webhook: MessageSid
 * (or SmsMessageSid/SmsSid), From (required, "+E164" or "whatsapp:+E164";
 * stored as "+E164"), To, Body, ProfileName, NumMedia with MediaUrl<N> and
 * MediaContentType<N>, ButtonText/ButtonPayload (WhatsApp quick replies).
 * keyword: from Body, or for a quick reply from ButtonPayload (template
 * authors choose payloads; a button labelled "Stop promotions" with payload
 * STOP opts out). event_id is set. Returns 0, CMN_ERR_INVALID with
 * "field: reason" in errstr (m cleared), or CMN_ERR_NOMEM. */
int wh_twilio_inbound_parse(const wh_form_t *form, const char *tenant_id, int64_t now_ms, cmn_inbound_t *m,
                            char *errstr, size_t errlen);

/* Appends the TwiML answer: <Response><Message>text</Message></Response>
 * with text XML-escaped, or the empty <Response/> when text is NULL or "".
 * Returns 0 or CMN_ERR_NOMEM. */
int wh_twilio_twiml(const char *text, cmn_buf_t *out);

/* 1 when s is "+" and 6 to 15 digits (an E.164 number as Twilio sends it). */
int wh_e164_ok(const char *s);

#endif
