-- Per tenant and app: calls and grants in [$1, $2), the last call and
-- grant before $2 (all history, for staleness), whether offline access was
-- granted and whether the app ever refreshed in the window, and whether its
-- source records requested scopes at all (authorize events with scopes).
WITH calls AS (
    SELECT tenant, client_id,
           count(*) FILTER (WHERE ts >= CAST($1 AS TIMESTAMPTZ)) AS calls,
           count(*) FILTER (WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND outcome = 'denied') AS denied,
           count(DISTINCT patient) FILTER (WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND outcome = 'allowed') AS patients,
           max(ts) AS last_call
    FROM access
    WHERE ts < CAST($2 AS TIMESTAMPTZ) AND client_id IS NOT NULL
      AND (CAST($3 AS VARCHAR) IS NULL OR tenant = CAST($3 AS VARCHAR)) AND (CAST($4 AS VARCHAR) IS NULL OR client_id = CAST($4 AS VARCHAR))
    GROUP BY ALL
), grants AS (
    SELECT tenant, client_id,
           count(*) FILTER (WHERE ts >= CAST($1 AS TIMESTAMPTZ)
                            AND kind IN ('token', 'refresh', 'client_credentials', 'token_exchange')
                            AND outcome = 'success') AS grants,
           max(ts) FILTER (WHERE kind IN ('token', 'refresh', 'client_credentials', 'token_exchange')
                           AND outcome = 'success') AS last_grant,
           count(*) FILTER (WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND kind = 'refresh'
                            AND outcome = 'success') AS refreshes,
           bool_or(ts >= CAST($1 AS TIMESTAMPTZ) AND outcome = 'success'
                   AND list_contains(scopes_granted, 'offline_access')) AS offline_granted,
           count(*) FILTER (WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND kind = 'authorize'
                            AND scopes_requested IS NOT NULL) AS authorize_with_scopes
    FROM auth
    WHERE ts < CAST($2 AS TIMESTAMPTZ) AND client_id IS NOT NULL
      AND (CAST($3 AS VARCHAR) IS NULL OR tenant = CAST($3 AS VARCHAR)) AND (CAST($4 AS VARCHAR) IS NULL OR client_id = CAST($4 AS VARCHAR))
    GROUP BY ALL
)
SELECT coalesce(c.tenant, g.tenant) AS tenant, coalesce(c.client_id, g.client_id) AS client_id,
       coalesce(c.calls, 0) AS calls, coalesce(c.denied, 0) AS denied,
       coalesce(c.patients, 0) AS patients,
       epoch_us(c.last_call) AS last_call_us, coalesce(g.grants, 0) AS grants,
       epoch_us(g.last_grant) AS last_grant_us, coalesce(g.refreshes, 0) AS refreshes,
       coalesce(g.offline_granted, false) AS offline_granted,
       coalesce(g.authorize_with_scopes, 0) AS authorize_with_scopes
FROM calls c FULL OUTER JOIN grants g ON c.tenant = g.tenant AND c.client_id = g.client_id
