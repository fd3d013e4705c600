//! Leases, renewal, release, full ranges, fixed addresses, restarts.
