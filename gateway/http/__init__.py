"""HTTP vocabulary all listeners share: problems, paths, headers, redirects, CSRF, request keys."""
