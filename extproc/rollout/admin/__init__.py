"""The rollout admin API: gRPC server, wire conversion, access control, CLI and tables."""
