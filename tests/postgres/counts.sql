-- Statistics of the jobs table, for the tests of job counts on a big table.

-- name: analyze_jobs
ANALYZE conveyor_jobs
