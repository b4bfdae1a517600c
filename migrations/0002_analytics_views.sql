-- 0002_analytics_views.sql - views for analysts over the core projections.
--
-- Plain views (not materialized) so they are always current; the indexes of
-- 0001 on created_at, (tenant_id, status) and (message_type, channel) keep
-- them cheap when a query filters on a time range. See docs/analytics.md.

-- Delivery funnel by tenant, channel and message type. A communication counts
-- in a column when it ever reached that milestone (its timestamp is set), so
-- a message that was delivered and then read counts in both. Later milestones
-- imply earlier ones where a provider does not report every step (email has
-- no delivery receipt; a click proves an open even when images are blocked).
CREATE VIEW v_delivery_rates AS
WITH funnel AS (
    SELECT tenant_id,
           channel,
           message_type,
           count(*) AS communications,
           count(*) FILTER (WHERE sent_at IS NOT NULL
                               OR delivered_at IS NOT NULL OR read_at IS NOT NULL
                               OR opened_at IS NOT NULL OR clicked_at IS NOT NULL) AS sent,
           count(*) FILTER (WHERE delivered_at IS NOT NULL OR read_at IS NOT NULL
                               OR opened_at IS NOT NULL OR clicked_at IS NOT NULL) AS delivered,
           count(*) FILTER (WHERE read_at IS NOT NULL) AS read,
           count(*) FILTER (WHERE opened_at IS NOT NULL OR clicked_at IS NOT NULL) AS opened,
           count(*) FILTER (WHERE clicked_at IS NOT NULL) AS clicked,
           count(*) FILTER (WHERE status IN ('failed', 'dead')) AS failed,
           count(*) FILTER (WHERE status = 'suppressed') AS suppressed,
           count(*) FILTER (WHERE status = 'rejected') AS rejected
    FROM communications
    GROUP BY tenant_id, channel, message_type
)
SELECT tenant_id,
       channel,
       message_type,
       communications,
       sent,
       delivered,
       read,
       opened,
       clicked,
       failed,
       suppressed,
       rejected,
       round(delivered::numeric / NULLIF(sent, 0), 4) AS delivery_rate,  -- of sent
       round(read::numeric / NULLIF(delivered, 0), 4) AS read_rate,      -- of delivered
       round(opened::numeric / NULLIF(sent, 0), 4) AS open_rate,         -- of sent
       round(clicked::numeric / NULLIF(sent, 0), 4) AS click_rate,       -- of sent
       round(failed::numeric / NULLIF(communications, 0), 4) AS failure_rate -- of all
FROM funnel;

COMMENT ON VIEW v_delivery_rates IS
    'Delivery funnel and rates by tenant, current channel and message type (NULL rate: nothing to divide by).';

-- Daily rollup: communications created per UTC day, channel and message
-- type, counted by their current status.
CREATE VIEW communications_daily AS
SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
       tenant_id,
       channel,
       message_type,
       count(*) AS communications,
       count(*) FILTER (WHERE status = 'accepted') AS accepted,
       count(*) FILTER (WHERE status = 'routed') AS routed,
       count(*) FILTER (WHERE status = 'deferred') AS deferred,
       count(*) FILTER (WHERE status = 'sending') AS sending,
       count(*) FILTER (WHERE status = 'retry_scheduled') AS retry_scheduled,
       count(*) FILTER (WHERE status = 'fallback') AS fallback,
       count(*) FILTER (WHERE status = 'sent') AS sent,
       count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'read') AS read,
       count(*) FILTER (WHERE status = 'opened') AS opened,
       count(*) FILTER (WHERE status = 'clicked') AS clicked,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'dead') AS dead,
       count(*) FILTER (WHERE status = 'suppressed') AS suppressed,
       count(*) FILTER (WHERE status = 'rejected') AS rejected
FROM communications
GROUP BY 1, 2, 3, 4;

COMMENT ON VIEW communications_daily IS
    'Communications per UTC day of creation, tenant, current channel and message type, by current status.';

-- Time from acceptance to the provider accepting the message, per channel
-- and message type: the engine's own latency (queueing, routing, retries).
CREATE VIEW v_send_latency AS
SELECT tenant_id,
       channel,
       message_type,
       count(*) AS samples,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - accepted_at)) AS p50_seconds,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - accepted_at)) AS p95_seconds,
       max(extract(epoch FROM sent_at - accepted_at)) AS max_seconds
FROM communications
WHERE accepted_at IS NOT NULL AND sent_at IS NOT NULL
GROUP BY tenant_id, channel, message_type;

COMMENT ON VIEW v_send_latency IS
    'Seconds from accepted to sent (p50, p95, max) by tenant, channel and message type.';
