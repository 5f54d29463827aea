"""One router per resource: health, benches (leases, manual operations, the emergency
stop) and runs."""
