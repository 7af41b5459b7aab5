"""Where the rollout state lives: file or etcd (client, session, watch, store), leader election.

``opener`` builds the store that a store URL (extproc.addresses) names.
"""
