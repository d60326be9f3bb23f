-- Per log source, stream and tenant: events in the lake, the newest event
-- time, and the newest day partition. Tenants are kept apart so a
-- tenant-limited user sees only their own tenants' share of a source.
SELECT source, stream, tenant, count(*) AS events, epoch_us(max(ts)) AS last_us
FROM (
    SELECT source, 'auth' AS stream, tenant, ts FROM auth
    UNION ALL
    SELECT source, 'access' AS stream, tenant, ts FROM access
)
GROUP BY ALL
ORDER BY source, stream, tenant
