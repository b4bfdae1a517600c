-- 0005_client_preferences.sql - client preferences and the address -> client
-- index that inbound opt-outs need.
--
-- client_preferences is the projection of the compacted crm.preferences
-- topic, written by the projector (newest updated_at wins; a tombstone
-- deletes the row) and read by the router (batched, behind a cache that
-- crm.preferences itself refreshes) and by ingest's GET endpoint.
CREATE TABLE client_preferences (
    tenant_id       text        NOT NULL,
    client_id       text        NOT NULL,
    snapshot        jsonb       NOT NULL,   -- the ClientPreferences v1 record, canonical JSON (crm/preferences.h)
    updated_at      timestamptz NOT NULL,   -- snapshot.updated_at: the newest snapshot wins
    kafka_partition int,                    -- where it was read from crm.preferences, for tracing
    kafka_offset    bigint,
    projected_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, client_id)
);

COMMENT ON TABLE client_preferences IS
    'Latest ClientPreferences snapshot per client (projection of the compacted crm.preferences topic).';
COMMENT ON COLUMN client_preferences.snapshot IS
    'Full snapshot: preferred_channels, timezone, quiet_hours, opt_out, whatsapp_consent, locale. No addresses.';

-- Which clients an address belongs to, so a reply ("STOP" from a phone) can
-- be turned into a preference change of the right clients. Written by the
-- router when it routes a request (it is the one service that sees client id
-- and addresses together); the address is only stored as
-- HMAC-SHA256(CRM_DATA_KEY, address) (crm/crypto.h): E.164 with its '+' for
-- sms/whatsapp, the lower-cased address for email.
CREATE TABLE client_contacts (
    tenant_id    text        NOT NULL,
    channel      text        NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp')),
    address_hash bytea       NOT NULL CHECK (octet_length(address_hash) = 32),
    client_id    text        NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, address_hash, client_id)
);

COMMENT ON TABLE client_contacts IS
    'Address (keyed hash only) -> client index, written by the router, read by the webhook receiver for opt-outs.';
