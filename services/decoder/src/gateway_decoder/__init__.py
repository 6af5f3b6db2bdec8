"""The decoder service: `{p}:frames` -> `{p}:records` / `{p}:dead` (ALP and application files)."""
