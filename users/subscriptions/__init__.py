"""Subscription URLs: `/sub/<token>/` serves a user's connection material to its clients.

The token is random (192 bits) and only its SHA-256 is stored, so a database dump holds
no working URL; the plain token exists once, in the answer to whoever issued it. Issuing
again rotates (the old URL stops at once), revoking deletes. Modules: `models`,
`tokens`, `services` (writes), `selectors` (reads), `ratelimit`, `views`, `urls`.
"""
