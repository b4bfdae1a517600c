-- 0003_router.sql - what the router needs in request_claims beyond 0001.
--
-- A claim remembers the Kafka record that made it and the router's output
-- fence at that moment (docs/routing.md, "Claims and duplicates"):
--   * the source lets the router tell a redelivery of the claiming record
--     (resume it) from another copy of the same request (a duplicate);
--   * the fence tells a resuming router where in the crm.send.* topics an
--     earlier, interrupted attempt can have written its Dispatch.
-- Applied by `crmctl migrate` inside one transaction: no BEGIN/COMMIT here.

ALTER TABLE request_claims
    ADD COLUMN source_topic     text,
    ADD COLUMN source_partition integer,
    ADD COLUMN source_offset    bigint,
    ADD COLUMN output_fence     jsonb;

COMMENT ON COLUMN request_claims.source_topic IS
    'Topic of the Kafka record that claimed the request (with source_partition and source_offset).';
COMMENT ON COLUMN request_claims.output_fence IS
    'End offsets of the crm.send.* partitions taken before the claiming batch produced anything: {"crm.send.email":[...]}.';

-- Claims left in state claimed are rare (a crash mid-batch) and are what an
-- operator looks for after an incident; done claims are the bulk.
CREATE INDEX request_claims_unfinished_idx ON request_claims (claimed_at) WHERE state = 'claimed';
