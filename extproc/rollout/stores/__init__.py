"""Where the rollout state lives: file or etcd (client, session, watch, store), leader election.

``url`` parses a store URL (pure); ``opener`` builds the store it names.
"""
