"""Pure translations between client dialects and upstream dialects (no I/O, no Flask)."""
