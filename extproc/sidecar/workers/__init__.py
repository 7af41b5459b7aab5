"""serve --workers N: a grpc-free supervisor, its control channel and the merged metrics."""
