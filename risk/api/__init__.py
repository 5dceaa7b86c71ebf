"""HTTP APIs of the service other than CDS Hooks and the SMART app (mounted in risk.app._mount_features)."""
