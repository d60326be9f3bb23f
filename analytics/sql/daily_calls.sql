-- FHIR calls per UTC day (days since 1970-01-01) and app in [$1, $2),
-- optionally one tenant ($3) and one app ($4), allowed and denied apart:
-- the report's activity chart.
SELECT epoch_us(ts) // 86400000000 AS day, client_id,
       count(*) FILTER (WHERE outcome = 'allowed') AS allowed,
       count(*) FILTER (WHERE outcome = 'denied') AS denied
FROM access
WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND ts < CAST($2 AS TIMESTAMPTZ)
  AND (CAST($3 AS VARCHAR) IS NULL OR tenant = CAST($3 AS VARCHAR))
  AND (CAST($4 AS VARCHAR) IS NULL OR client_id = CAST($4 AS VARCHAR))
  AND client_id IS NOT NULL
GROUP BY ALL
ORDER BY day, client_id
