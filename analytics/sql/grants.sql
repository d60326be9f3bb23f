-- Scopes requested and granted per tenant, app and version in [$1, $2),
-- optionally one tenant ($3) and one app ($4). One row per scope and kind.
WITH events AS (
    SELECT tenant, client_id, app_version, kind, outcome, ts,
           scopes_requested, scopes_granted
    FROM auth
    WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND ts < CAST($2 AS TIMESTAMPTZ)
      AND (CAST($3 AS VARCHAR) IS NULL OR tenant = CAST($3 AS VARCHAR))
      AND (CAST($4 AS VARCHAR) IS NULL OR client_id = CAST($4 AS VARCHAR))
      AND client_id IS NOT NULL
)
SELECT tenant, client_id, app_version, 'requested' AS what, scope,
       count(*) AS events, epoch_us(min(ts)) AS first_us, epoch_us(max(ts)) AS last_us
FROM (SELECT *, unnest(scopes_requested) AS scope FROM events
      WHERE kind = 'authorize' AND scopes_requested IS NOT NULL)
GROUP BY ALL
UNION ALL
SELECT tenant, client_id, app_version, 'granted' AS what, scope,
       count(*) AS events, epoch_us(min(ts)) AS first_us, epoch_us(max(ts)) AS last_us
FROM (SELECT *, unnest(scopes_granted) AS scope FROM events
      WHERE outcome = 'success' AND scopes_granted IS NOT NULL
        AND kind IN ('token', 'refresh', 'client_credentials', 'token_exchange'))
GROUP BY ALL
