-- 0006_inbound.sql - what people write to us, the numbers we do not know
-- yet, and provider receipts that arrive before our own `sent` event.
--
-- Written by the projector from crm.inbound (inbound_messages, contacts,
-- conversations of 0004) and crm.status (receipts_unmatched). See
-- docs/analytics.md.
--
-- Personal data: a phone number is only stored as
-- HMAC-SHA256(CRM_DATA_KEY, E.164 with its '+') (*_hash, the same keyed hash
-- as conversations.phone_hash and client_contacts.address_hash, so the three
-- join), and, where a person must be able to act on it (answer an unknown
-- number, read a reply), sealed with AES-256-GCM under a key derived from
-- CRM_DATA_KEY (*_sealed, text "v1:<base64>", crm/crypto.h). Analysts see
-- neither numbers nor bodies; the CRM opens the sealed fields with the key.
-- Erasing a person: compute the hash of their number and delete the rows of
-- inbound_messages and contacts that carry it.
-- Applied by `crmctl migrate` inside one transaction: no BEGIN/COMMIT here.

-- One row per inbound SMS or WhatsApp message. event_id is UUIDv5 of
-- (provider, provider_message_id), so a webhook the provider delivers twice
-- is stored once, and only a newly stored message moves conversations.
CREATE TABLE inbound_messages (
    event_id            uuid        PRIMARY KEY,
    tenant_id           text        NOT NULL,
    channel             text        NOT NULL CHECK (channel IN ('sms', 'whatsapp')),
    provider            text        NOT NULL,          -- twilio, meta
    provider_message_id text        NOT NULL,          -- Twilio SID, WhatsApp wamid
    from_hash           bytea       NOT NULL CHECK (octet_length(from_hash) = 32),
    from_sealed         text        NOT NULL,          -- the sender's E.164 number, sealed
    to_address          text,                          -- our own number the message was sent to (not personal data)
    body_sealed         text,                          -- the text, sealed; NULL for media-only messages
    profile_name_sealed text,                          -- WhatsApp profile name, sealed
    keyword             text CHECK (keyword IN ('stop', 'start', 'help')), -- recognised command, if any
    media               jsonb       NOT NULL DEFAULT '[]', -- [{"url","content_type"}] as the provider gave them
    received_at         timestamptz NOT NULL,          -- when the provider received it
    client_id           text,                          -- the client of this number when exactly one is known, else NULL
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    kafka_partition     int,
    kafka_offset        bigint
);

COMMENT ON TABLE inbound_messages IS
    'Inbound SMS/WhatsApp messages, one per provider message; sender and body only as keyed hash and sealed text.';
COMMENT ON COLUMN inbound_messages.client_id IS
    'Resolved through client_contacts (same tenant and address hash) when exactly one client has this number;'
    ' NULL when none or several.';

CREATE INDEX inbound_messages_from_idx ON inbound_messages (tenant_id, from_hash, received_at);
CREATE INDEX inbound_messages_client_idx ON inbound_messages (tenant_id, client_id, received_at)
    WHERE client_id IS NOT NULL;
CREATE INDEX inbound_messages_received_idx ON inbound_messages (received_at);

-- Numbers that wrote to us and belong to no known client: a work list for
-- the CRM (create or link a client, then set status).
CREATE TABLE contacts (
    tenant_id       text        NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('sms', 'whatsapp')),
    address_hash    bytea       NOT NULL CHECK (octet_length(address_hash) = 32),
    address_sealed  text        NOT NULL,                -- the number, sealed, so an agent can call back
    first_seen_at   timestamptz NOT NULL,
    last_inbound_at timestamptz NOT NULL,
    inbound_count   integer     NOT NULL DEFAULT 0 CHECK (inbound_count >= 0),
    status          text        NOT NULL DEFAULT 'unknown' CHECK (status IN ('unknown', 'linked', 'ignored')),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, address_hash)
);

COMMENT ON TABLE contacts IS
    'Senders with no client_contacts row (per tenant and number): status unknown until the CRM links or ignores them.';
COMMENT ON COLUMN contacts.status IS
    'unknown: written by the projector; linked / ignored: set by the CRM follow-up, never reset by the projector.';

CREATE INDEX contacts_unknown_idx ON contacts (tenant_id, last_inbound_at) WHERE status = 'unknown';

-- Provider receipts (delivered, read, failed, ...) that name the message
-- only by the provider's id, seen before the `sent` event carrying that id
-- was projected (the webhook beat our own status event). They wait here and
-- are applied, then deleted, as soon as that `sent` event is projected.
CREATE TABLE receipts_unmatched (
    event_id            uuid        PRIMARY KEY,
    tenant_id           text        NOT NULL,
    channel             text,
    status              text        NOT NULL,
    provider            text,
    provider_message_id text        NOT NULL,
    error_code          text,
    error_message       text,
    occurred_at         timestamptz NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    kafka_partition     int,
    kafka_offset        bigint
);

COMMENT ON TABLE receipts_unmatched IS
    'Provider receipts waiting for the sent event of their provider_message_id; normally empty or short-lived.';

CREATE INDEX receipts_unmatched_provider_message_idx ON receipts_unmatched (provider_message_id);

-- Receipts are tied to a communication through its `sent` event, so the
-- history needs a lookup by provider message id.
CREATE INDEX communication_events_provider_message_idx ON communication_events (provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- Inbound volume per UTC day, tenant and channel: messages, distinct
-- senders, commands, and messages from numbers without a known client.
CREATE VIEW v_inbound_daily AS
SELECT (received_at AT TIME ZONE 'UTC')::date AS day,
       tenant_id,
       channel,
       count(*) AS messages,
       count(DISTINCT from_hash) AS senders,
       count(*) FILTER (WHERE keyword = 'stop') AS stops,
       count(*) FILTER (WHERE keyword = 'start') AS starts,
       count(*) FILTER (WHERE keyword = 'help') AS helps,
       count(*) FILTER (WHERE client_id IS NULL) AS without_client
FROM inbound_messages
GROUP BY 1, 2, 3;

COMMENT ON VIEW v_inbound_daily IS
    'Inbound messages per UTC day, tenant and channel, with distinct senders, commands and unmatched senders.';
