"""Stand-ins for the services the daemon talks to, run for real on loopback (never patched in)."""
