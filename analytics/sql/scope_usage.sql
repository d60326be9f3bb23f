-- Allowed calls per granted scope (through the temporary table scope_map,
-- which says which required permissions each scope covers), from the
-- staged window_calls, window_keys and window_patients: distinct patients are counted
-- once per scope, not once per permission.
WITH calls AS (
    SELECT m.tenant, m.client_id, m.scope, sum(w.calls) AS calls,
           min(w.first_ts) AS first_ts, max(w.last_ts) AS last_ts
    FROM window_calls w
    JOIN scope_map m
      ON w.tenant = m.tenant AND w.client_id = m.client_id AND w.required = m.required
    WHERE w.outcome = 'allowed'
    GROUP BY ALL
), patients AS (
    SELECT m.tenant, m.client_id, m.scope, count(DISTINCT p.patient) AS patients
    FROM window_patients p
    JOIN window_keys k ON p.k = k.k
    JOIN scope_map m
      ON k.tenant = m.tenant AND k.client_id = m.client_id AND k.required = m.required
    GROUP BY ALL
)
SELECT c.tenant, c.client_id, c.scope, CAST(c.calls AS BIGINT) AS calls, coalesce(p.patients, 0) AS patients,
       epoch_us(c.first_ts) AS first_us, epoch_us(c.last_ts) AS last_us
FROM calls c
LEFT JOIN patients p ON c.tenant = p.tenant AND c.client_id = p.client_id AND c.scope = p.scope
