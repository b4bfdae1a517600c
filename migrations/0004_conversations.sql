-- 0004_conversations.sql - per-phone conversation state: when a person last
-- wrote to us on a channel, and so whether WhatsApp's 24-hour
-- customer-service window is open.
--
-- Written by `crmctl conversations set` today and by the projector from
-- crm.inbound once the webhook receiver feeds it; read by crm-whatsapp-worker
-- (one query per consumed batch) to choose between free text and an approved
-- template. See docs/whatsapp.md.
--
-- Why the phone number is hashed
-- ------------------------------
-- A phone number is personal data (GDPR art. 4(1)), and this table is read by
-- analysts and copied into backups and replicas. The only thing any reader
-- needs is equality ("the row of this number"), never the number itself, so
-- the table stores phone_hash = HMAC-SHA256(CRM_DATA_KEY, E.164 number with
-- its leading '+', e.g. '+14155550100'): 32 raw bytes, no plain number.
-- It is keyed rather than a plain SHA-256 because the space of phone numbers
-- is small (about 10^12 plausible values): an unkeyed hash is reversed by
-- enumeration in minutes, a keyed one is not without the key, which lives only
-- in the services' secrets, never in the database.
-- Rotating CRM_DATA_KEY makes every existing row unreachable; that fails safe
-- (the worker sees "no conversation", sends the approved template, and the
-- next inbound message opens a fresh row), and old rows can be deleted by age.
-- Erasing a person means computing the hash of their number with the key and
-- deleting the rows that carry it.
-- Applied by `crmctl migrate` inside one transaction: no BEGIN/COMMIT here.

CREATE TABLE conversations (
    tenant_id         text        NOT NULL,
    channel           text        NOT NULL CHECK (channel IN ('whatsapp', 'sms')),
    phone_hash        bytea       NOT NULL CHECK (octet_length(phone_hash) = 32),
    last_inbound_at   timestamptz,                      -- the person's latest message to us; NULL: never
    window_expires_at timestamptz,                      -- WhatsApp: last_inbound_at + 24 h (free text allowed until then)
    unread_count      integer     NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, phone_hash)
);

COMMENT ON TABLE conversations IS
    'Per (tenant, channel, phone) conversation state; the phone is stored only as HMAC-SHA256(CRM_DATA_KEY, E.164).';
COMMENT ON COLUMN conversations.phone_hash IS
    'HMAC-SHA256 keyed by CRM_DATA_KEY of the E.164 number with its leading +; 32 bytes. Never the plain number.';
COMMENT ON COLUMN conversations.last_inbound_at IS
    'Time of the latest inbound message; the WhatsApp worker derives the 24-hour window from this column.';
COMMENT ON COLUMN conversations.window_expires_at IS
    'Denormalised last_inbound_at + 24 hours for analysts and dashboards; the worker does not read it.';
COMMENT ON COLUMN conversations.unread_count IS
    'Inbound messages not yet seen by an agent (maintained by the inbound projection).';

-- The worker's lookups use the primary key. Dashboards list the conversations
-- whose window is open now, per tenant.
CREATE INDEX conversations_window_idx ON conversations (tenant_id, window_expires_at)
    WHERE window_expires_at IS NOT NULL;
