-- Events per UTC day (days since 1970-01-01), tenant, app and stream in
-- [$1, $2): the dashboard's activity charts. `denied` counts access calls
-- refused and auth events that failed.
SELECT epoch_us(ts) // 86400000000 AS day, tenant, client_id, 'access' AS stream,
       count(*) AS events, count(*) FILTER (WHERE outcome = 'denied') AS denied
FROM access
WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND ts < CAST($2 AS TIMESTAMPTZ)
GROUP BY ALL
UNION ALL
SELECT epoch_us(ts) // 86400000000 AS day, tenant, client_id, 'auth' AS stream,
       count(*) AS events, count(*) FILTER (WHERE outcome <> 'success') AS denied
FROM auth
WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND ts < CAST($2 AS TIMESTAMPTZ)
GROUP BY ALL
ORDER BY day, tenant, client_id, stream
