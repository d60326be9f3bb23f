-- FHIR calls per UTC day (days since 1970-01-01) and app, allowed and
-- denied apart, from the staged window_calls: the report's activity chart.
SELECT day, client_id,
       CAST(coalesce(sum(calls) FILTER (WHERE outcome = 'allowed'), 0) AS BIGINT) AS allowed,
       CAST(coalesce(sum(calls) FILTER (WHERE outcome = 'denied'), 0) AS BIGINT) AS denied
FROM window_calls
WHERE client_id IS NOT NULL
GROUP BY ALL
ORDER BY day, client_id
