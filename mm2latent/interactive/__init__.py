"""Pure helpers of the interactive editor (flows/app): model set, uploads, edit sessions.

The library never imports a web framework; the server in flows/app calls these.
"""
