"""Shared by every layer: errors, defaults, settings, log redaction, input checks, Redis
connections and the Lua script loader.

Imports nothing else of this project; everything else may import it.
"""
