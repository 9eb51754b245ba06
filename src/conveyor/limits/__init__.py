"""Flow control across the fleet: rules whose state lives in the database and that the claim
enforces inside its own transaction. The worker only caches what they decide and sleeps."""
