-- Allowed calls per granted scope (through the temporary table scope_map,
-- which says which required permissions each scope covers), in [$1, $2):
-- distinct patients are counted once per scope, not once per permission.
SELECT m.tenant, m.client_id, m.scope, count(*) AS calls,
       count(DISTINCT a.patient) AS patients,
       epoch_us(min(a.ts)) AS first_us, epoch_us(max(a.ts)) AS last_us
FROM access a
JOIN scope_map m
  ON a.tenant = m.tenant AND a.client_id = m.client_id AND a.required = m.required
WHERE a.ts >= CAST($1 AS TIMESTAMPTZ) AND a.ts < CAST($2 AS TIMESTAMPTZ)
  AND a.outcome = 'allowed'
GROUP BY ALL
