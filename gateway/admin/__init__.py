"""The gateway admins' surfaces: the admin API (bearer tokens or an admin's console session) and
the admin console's pages, over the same functions."""
