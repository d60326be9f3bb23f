-- Stage 4: one scan of `auth` over [$1, $2) (filters as window_calls.sql),
-- rolled up per app, version, kind, outcome, scope lists and source. Scope
-- lists repeat on every event of an app, so this table is small.
CREATE OR REPLACE TEMP TABLE window_auth AS
SELECT tenant, client_id, app_version, kind, outcome, scopes_requested, scopes_granted, source,
       count(*) AS events, min(ts) AS first_ts, max(ts) AS last_ts
FROM auth
WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND ts < CAST($2 AS TIMESTAMPTZ)
  AND (CAST($3 AS VARCHAR) IS NULL OR tenant = CAST($3 AS VARCHAR))
  AND (CAST($4 AS VARCHAR) IS NULL OR client_id = CAST($4 AS VARCHAR))
GROUP BY ALL
