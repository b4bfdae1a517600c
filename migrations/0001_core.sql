-- 0001_core.sql - the core projections of the communication engine.
--
-- Written by the projector from the crm.status topic (communications,
-- communication_events, consumer_offsets) and by the router (request_claims).
-- Applied by `crmctl migrate` inside one transaction: no BEGIN/COMMIT here.
-- See docs/analytics.md for how to query these tables.

-- One row per communication: one request of an upstream system to tell one
-- client one thing, whichever channels it took. The row holds the current
-- status and, per milestone, the first time the communication reached it.
CREATE TABLE communications (
    communication_id    uuid PRIMARY KEY,           -- UUIDv5 of tenant_id and request_id
    tenant_id           text NOT NULL DEFAULT 'default',
    client_id           text,                       -- the CRM's client id (not personal data)
    request_id          text,                       -- the upstream idempotency key
    message_type        text,                       -- e.g. 'event_reminder'
    channel             text,                       -- current channel: email, sms, whatsapp (NULL before routing)
    status              text NOT NULL,              -- current status (see docs/analytics.md)
    status_rank         int  NOT NULL,              -- rank of status within its hop (higher = further along)
    hop                 int  NOT NULL DEFAULT 0,    -- 0 = first channel, 1 = first fallback, ...
    attempt             int  NOT NULL DEFAULT 0,    -- attempt number on the current channel
    provider            text,                       -- smtp, twilio, meta, ...
    provider_message_id text,                       -- the provider's id (Twilio SID, wamid, Message-ID)
    error_code          text,                       -- provider error code of the current status, if any
    error_message       text,
    reason              text,                       -- why suppressed/rejected (opted_out, no_consent, ...)
    status_at           timestamptz NOT NULL,       -- when the current status occurred
    created_at          timestamptz NOT NULL,       -- time of the first event seen
    accepted_at         timestamptz,                -- milestone timestamps: earliest time of each status
    routed_at           timestamptz,
    deferred_at         timestamptz,
    sending_at          timestamptz,
    sent_at             timestamptz,
    delivered_at        timestamptz,
    read_at             timestamptz,
    opened_at           timestamptz,
    clicked_at          timestamptz,
    failed_at           timestamptz,
    suppressed_at       timestamptz,
    rejected_at         timestamptz,
    dead_at             timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(), -- when the projector last changed the row
    last_event_id       uuid NOT NULL               -- the event that set the current status
);

COMMENT ON TABLE communications IS
    'One row per communication: current status (applied by rank, never regressing) and the first time of each milestone.';
COMMENT ON COLUMN communications.status_rank IS
    'Order of statuses within one hop; a later hop (fallback channel) always outranks an earlier one.';
COMMENT ON COLUMN communications.created_at IS 'Time of the earliest event of this communication.';

-- Dashboards filter by tenant and status, group by type and channel, and
-- look up provider ids when a provider support ticket names one.
CREATE INDEX communications_tenant_status_idx ON communications (tenant_id, status);
CREATE INDEX communications_type_channel_idx ON communications (message_type, channel);
CREATE INDEX communications_provider_message_idx ON communications (provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX communications_created_at_idx ON communications (created_at);

-- The full, append-only history: one row per StatusEvent. event_id is
-- deterministic, so an event re-emitted after a crash is stored once.
-- There is deliberately no foreign key to communications: history is written
-- first, and it stays valid even if a projection row is rebuilt.
CREATE TABLE communication_events (
    event_id            uuid PRIMARY KEY,
    communication_id    uuid NOT NULL,
    tenant_id           text NOT NULL DEFAULT 'default',
    client_id           text,
    request_id          text,
    message_type        text,
    channel             text,
    status              text NOT NULL,
    status_rank         int  NOT NULL,
    attempt             int  NOT NULL DEFAULT 0,
    hop                 int  NOT NULL DEFAULT 0,
    provider            text,
    provider_message_id text,
    error_code          text,
    error_message       text,
    reason              text,
    occurred_at         timestamptz NOT NULL,       -- when it happened (the emitting service's clock)
    recorded_at         timestamptz NOT NULL DEFAULT now(), -- when the projector stored it
    kafka_partition     int,                        -- where it was read from crm.status, for tracing
    kafka_offset        bigint
);

COMMENT ON TABLE communication_events IS
    'Append-only history of every status event of every communication, one row per event_id.';

CREATE INDEX communication_events_communication_idx ON communication_events (communication_id, occurred_at);

-- The projector's own position in each partition. It is written in the same
-- transaction as the events of a batch, and the projector seeks to it when a
-- partition is assigned, so a crash between the database commit and the Kafka
-- commit never applies a batch twice.
CREATE TABLE consumer_offsets (
    group_id    text   NOT NULL,
    topic       text   NOT NULL,
    partition   int    NOT NULL,
    next_offset bigint NOT NULL,                    -- the next offset to read
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

COMMENT ON TABLE consumer_offsets IS
    'Next Kafka offset to read per consumer group and partition, committed atomically with the projections.';

-- The router claims every request id before routing it, so a request
-- delivered twice by Kafka (or sent twice by an upstream retry) is routed once.
CREATE TABLE request_claims (
    tenant_id        text NOT NULL,
    request_id       text NOT NULL,
    communication_id uuid NOT NULL,
    state            text NOT NULL DEFAULT 'claimed' CHECK (state IN ('claimed', 'done')),
    claimed_at       timestamptz NOT NULL DEFAULT now(),
    done_at          timestamptz,
    PRIMARY KEY (tenant_id, request_id)
);

COMMENT ON TABLE request_claims IS
    'Idempotency claims of the router: one row per (tenant, request_id); done once its outcome was produced.';
