"""What a VPN user receives: share links, QR codes, WireGuard files and subscription formats.

Everything here is rendered from the user and its server on demand and never stored
rendered: `profiles` turns a user into a typed connection profile (or says what is
missing), `links`, `wireguard`, `qr` and `formats` turn profiles into what clients import.
Nothing in this package touches the database or logs a secret.
"""
