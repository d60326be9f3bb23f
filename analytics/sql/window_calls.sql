-- Stage 1 of a matrix or report: one scan of `access` over [$1, $2),
-- optionally one tenant ($3) and one app ($4), rolled up to the keys the
-- other queries need (app, version, permission, outcome, day, source).
-- usage, scope_usage, activity, daily_calls and sources read this small
-- table instead of scanning the lake once each.
CREATE OR REPLACE TEMP TABLE window_calls AS
SELECT tenant, client_id, app_version, required, outcome,
       -- Ingest judged the call's context without the token's scopes (e.g.
       -- an AuditEvent names the token, not its scopes): the context in
       -- `required` is a guess, so coverage ignores it.
       granted_covered IS NULL AS context_guessed,
       epoch_us(ts) // 86400000000 AS day, source,
       count(*) AS calls, min(ts) AS first_ts, max(ts) AS last_ts
FROM access
WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND ts < CAST($2 AS TIMESTAMPTZ)
  AND (CAST($3 AS VARCHAR) IS NULL OR tenant = CAST($3 AS VARCHAR))
  AND (CAST($4 AS VARCHAR) IS NULL OR client_id = CAST($4 AS VARCHAR))
GROUP BY ALL
