-- 0007_router_deferrals.sql - deferred request claims (docs/routing.md,
-- "Deferral").
--
-- A request held back by quiet hours or send_after is finished as
-- 'deferred' rather than 'done': its record waits in crm.defer.* and comes
-- back to crm.requests carrying the header x-crm-deferral: <deferral_seq>.
-- Only a record carrying the claim's current sequence takes it back (state
-- 'claimed' again, with that record as its source); any other copy is a
-- duplicate. Each deferral increments the sequence, so a copy from an older
-- deferral never matches again.
-- Applied by `crmctl migrate` inside one transaction: no BEGIN/COMMIT here.

ALTER TABLE request_claims DROP CONSTRAINT request_claims_state_check;
ALTER TABLE request_claims ADD CONSTRAINT request_claims_state_check
    CHECK (state IN ('claimed', 'done', 'deferred'));

ALTER TABLE request_claims
    ADD COLUMN deferral_seq   bigint NOT NULL DEFAULT 0 CHECK (deferral_seq >= 0),
    ADD COLUMN deferred_until timestamptz;

COMMENT ON COLUMN request_claims.deferral_seq IS
    'How many times the request was deferred; a returning record must carry this number in x-crm-deferral.';
COMMENT ON COLUMN request_claims.deferred_until IS
    'State deferred: when the request is due back on crm.requests (end of quiet hours, send_after).';

-- Deferred claims long past their due time point at a deferred record that
-- never came back (a defer topic nobody consumes, a record in the DLQ).
CREATE INDEX request_claims_deferred_idx ON request_claims (deferred_until) WHERE state = 'deferred';
