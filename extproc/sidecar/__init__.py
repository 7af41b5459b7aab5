"""The sidecar: the gRPC edge around the pure decision core."""
