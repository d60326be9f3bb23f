-- The log sources (the lineage column `source`) that delivered events to
-- the window, per stream, from the staged window_calls and window_auth:
-- what a report's numbers are made of.
SELECT source, stream, CAST(sum(n) AS BIGINT) AS events,
       epoch_us(min(first_ts)) AS first_us, epoch_us(max(last_ts)) AS last_us
FROM (
    SELECT source, 'auth' AS stream, events AS n, first_ts, last_ts FROM window_auth
    UNION ALL
    SELECT source, 'access' AS stream, calls AS n, first_ts, last_ts FROM window_calls
)
GROUP BY ALL
ORDER BY source, stream
