-- The log sources (the lineage column `source`) that delivered events in
-- [$1, $2), per stream, optionally one tenant ($3) and one app ($4): what
-- a report's numbers are made of.
SELECT source, stream, count(*) AS events,
       epoch_us(min(ts)) AS first_us, epoch_us(max(ts)) AS last_us
FROM (
    SELECT source, 'auth' AS stream, ts, tenant, client_id FROM auth
    UNION ALL
    SELECT source, 'access' AS stream, ts, tenant, client_id FROM access
)
WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND ts < CAST($2 AS TIMESTAMPTZ)
  AND (CAST($3 AS VARCHAR) IS NULL OR tenant = CAST($3 AS VARCHAR))
  AND (CAST($4 AS VARCHAR) IS NULL OR client_id = CAST($4 AS VARCHAR))
GROUP BY ALL
ORDER BY source, stream
