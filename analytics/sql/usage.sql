-- The permissions calls needed, per tenant, app, version and outcome, in
-- [$1, $2).
SELECT tenant, client_id, app_version, required, outcome,
       -- Ingest judged the call's context without the token's scopes (e.g.
       -- an AuditEvent names the token, not its scopes): the context in
       -- `required` is a guess, so coverage ignores it.
       granted_covered IS NULL AS context_guessed,
       count(*) AS calls
FROM access
WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND ts < CAST($2 AS TIMESTAMPTZ)
  AND (CAST($3 AS VARCHAR) IS NULL OR tenant = CAST($3 AS VARCHAR)) AND (CAST($4 AS VARCHAR) IS NULL OR client_id = CAST($4 AS VARCHAR))
  AND client_id IS NOT NULL AND required IS NOT NULL
GROUP BY ALL
