-- promote_due: scheduled and retrying jobs whose run_at has come -> queued. Returns how many.
local count = promote_due()
publish()
return count
