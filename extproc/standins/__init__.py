"""Stand-ins for the TTS models: real HTTP servers that speak (espeak-ng) and fail on command.

``server`` is the model server (``python -m extproc.standins.server``), ``speech`` synthesizes
and caches, ``faults`` holds the injectable faults, ``quality_table`` prints the scorers'
figures on stand-in audio.
"""
