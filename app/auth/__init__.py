"""API-key authentication and role checks: the one place where access is decided.

- keys: key ids, secrets and their HMAC
- policy: the Caller, the spec's `x-roles` rules and the decision (403 / scoped 404)
- key_store: the one key lookup (psycopg's async pool) and the batched `last_used_at` writes
- authenticator: the check of a pair, from row to Caller
- connexion_glue: the security handler and info functions Connexion calls, and `current_caller()`

The package imports nothing itself: import from the room that holds the name.
"""
